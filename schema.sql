-- hydra-sentinel state. This file is the source of truth for the schema and
-- the program applies it itself, tracked in PRAGMA user_version. It is
-- append-only: each `-- version N` section is one migration, applied once, in
-- order. To change the schema, append a section; never edit a released one.
--
-- Principle: store changes, not copies. A job that stays green for a year
-- costs one `spans` row, not one row per evaluation: a span is a run of
-- consecutive evals of a jobset in which a job had the same build, and Hydra
-- reuses a build (same id) for as long as the derivation does not change.
-- A build's status lives once, in `builds`, so a restart that changes it
-- rewrites history everywhere that build was seen.

-- version 1: evals, jobs, builds and their spans

CREATE TABLE jobsets (
    id          INTEGER PRIMARY KEY,
    project     TEXT NOT NULL,
    name        TEXT NOT NULL,
    -- When failed builds of the newest eval were last asked about again (Unix s).
    rechecked_at INTEGER NOT NULL DEFAULT 0,
    UNIQUE (project, name)
);

CREATE TABLE evals (
    id            INTEGER PRIMARY KEY,   -- Hydra's eval id
    jobset_id     INTEGER NOT NULL REFERENCES jobsets (id),
    seq           INTEGER NOT NULL,      -- 1, 2, 3… in the order ingested (= Hydra's order)
    timestamp     INTEGER NOT NULL,      -- when Hydra created the eval (Unix s)
    revision      TEXT,                  -- nixpkgs revision (or locked flake)
    checkout_time INTEGER,
    eval_time     INTEGER,
    nr_builds     INTEGER NOT NULL,
    rejected_jobs INTEGER NOT NULL,      -- job names that were not plausible attribute paths
    strategy      TEXT NOT NULL CHECK (strategy IN ('eval-builds', 'per-build')),
    ingested_at   INTEGER NOT NULL,
    UNIQUE (jobset_id, seq)
);

CREATE TABLE jobs (
    id        INTEGER PRIMARY KEY,
    jobset_id INTEGER NOT NULL REFERENCES jobsets (id),
    attr      TEXT NOT NULL,             -- attribute path, e.g. python3Packages.foo
    system    TEXT NOT NULL,             -- e.g. x86_64-linux
    suffixed  INTEGER NOT NULL,          -- 1 when Hydra's job name is attr.system
    -- Attribute first: `history ATTR` looks jobs up by attribute.
    UNIQUE (attr, system, jobset_id, suffixed)
);

CREATE TABLE builds (
    id       INTEGER PRIMARY KEY,        -- Hydra's build id
    job_id   INTEGER NOT NULL REFERENCES jobs (id),
    finished INTEGER NOT NULL,
    status   INTEGER,                    -- Hydra buildstatus, NULL until finished
    stoptime INTEGER,
    drv_hash TEXT NOT NULL,              -- hash part of the .drv store path
    nixname  TEXT NOT NULL
);

CREATE TABLE spans (
    job_id    INTEGER NOT NULL REFERENCES jobs (id),
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER,                   -- NULL while the job still has this build in the newest eval
    build_id  INTEGER NOT NULL REFERENCES builds (id),
    PRIMARY KEY (job_id, first_seq)
) WITHOUT ROWID;

-- Builds whose job name (or store path, or jobset) was implausible: kept so
-- they are counted in every eval that has them but fetched and logged once.
CREATE TABLE refused_builds (
    id     INTEGER PRIMARY KEY,          -- Hydra's build id
    job    TEXT NOT NULL,                -- as Hydra sent it; data, never markup
    reason TEXT NOT NULL
);
CREATE INDEX refused_builds_by_job ON refused_builds (job);

-- version 2: the ledger of actions and opt-outs
-- What hydra-sentinel did or set out to do, written by the forge side (an
-- intent before every outward action, then its result) and read by the
-- policy engine. Kinds, states and steps are the policy module's words.

CREATE TABLE actions (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('notify', 'remind', 'mark_broken', 'close_pr', 'retire', 'escalate', 'hold')),
    attr          TEXT,                  -- NULL for a hold
    systems       TEXT NOT NULL,         -- JSON array of systems, sorted
    all_platforms INTEGER NOT NULL DEFAULT 0,
    step          TEXT,                  -- notice, remind-7d, retire-warning, ...
    batch         TEXT,                  -- the plan's PR batch key
    state         TEXT NOT NULL CHECK (state IN ('intent', 'done', 'failed', 'open', 'merged', 'closed')),
    planned_at    INTEGER NOT NULL,      -- Unix s, when the intent was written
    done_at       INTEGER,               -- when it happened (comment posted, PR opened)
    closed_at     INTEGER,               -- when its PR was merged or closed
    pr            INTEGER,               -- GitHub PR number
    issue         INTEGER,               -- GitHub issue number
    pinged        TEXT NOT NULL DEFAULT '[]', -- JSON array of GitHub logins mentioned
    error         TEXT
);
CREATE INDEX actions_by_attr ON actions (attr, kind);
CREATE INDEX actions_by_pr ON actions (pr);

CREATE TABLE opt_outs (
    id          INTEGER PRIMARY KEY,
    attr        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('marker', 'label', 'snooze')),
    recorded_at INTEGER NOT NULL,
    until       INTEGER,                 -- for a snooze
    by          TEXT,                    -- GitHub login, when known
    note        TEXT NOT NULL DEFAULT '',
    revoked_at  INTEGER                  -- marker or label seen gone
);
CREATE INDEX opt_outs_by_attr ON opt_outs (attr);

-- version 3: commands humans gave in comments, each handled once

CREATE TABLE handled_comments (
    id       INTEGER PRIMARY KEY,        -- GitHub comment id
    number   INTEGER NOT NULL,           -- issue or pull request
    author   TEXT NOT NULL,
    body     TEXT NOT NULL,
    accepted INTEGER NOT NULL,           -- 1: obeyed; 0: declined (not allowed, or not understood)
    at       INTEGER NOT NULL
);

-- version 4: edits the nixpkgs editor refused

-- Why an action's edit cannot be made automatically (generated file, meta it
-- cannot prove is the package's own, ...): the package has to be marked by
-- hand. The action is settled, so it is not planned again for this failure.
ALTER TABLE actions ADD COLUMN refused TEXT;

-- version 5: one actor at a time

-- Whoever acts on GitHub (`run`, `once` or `act`) holds this lease, renews
-- it while it works and gives it back when done; another process acts only
-- after the lease expired, so two never reconcile each other's intents.
CREATE TABLE actor_lease (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    holder      TEXT NOT NULL,           -- host, process id and command, for people
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,        -- a dead holder on this host frees the lease
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL         -- Unix seconds, wall clock
);

-- version 6: whole-eval requests, at most one per eval

-- `/eval/{id}/builds` costs Hydra the whole array's work before the first
-- byte, and through hydra.nixos.org's proxy it may end in a 504 after
-- 900 s: it is asked for at most once per eval, ever. The row is written
-- (and committed) before the request is sent, so a crash or a restart never
-- sends it again; `outcome` is NULL until the answer is known. An eval whose
-- request timed out makes evals of its size and bigger (of the same jobset)
-- too big to ask for.
CREATE TABLE whole_eval_requests (
    eval_id   INTEGER PRIMARY KEY,       -- Hydra's eval id (the eval may not be stored yet)
    jobset_id INTEGER NOT NULL REFERENCES jobsets (id),
    builds    INTEGER NOT NULL,          -- builds in the eval when asked
    sent_at   INTEGER NOT NULL,          -- Unix s
    outcome   TEXT CHECK (outcome IN ('ok', 'timeout', 'failed')),
    reason    TEXT                       -- why it failed (then the eval went build by build)
);

-- version 7: when each build was last asked about

-- Builds are learned one by one over many passes when an eval is too big to
-- ask for whole (a trunk-sized first eval, a mass rebuild): each batch is
-- kept as it arrives, and rechecks ask about the builds least recently
-- asked about first. NULL: learned from a whole-eval download, or before
-- this column existed (oldest first).
ALTER TABLE builds ADD COLUMN fetched_at INTEGER;

-- version 8: when failures began, learned from Hydra on a first install

-- A job already failing in the first stored eval has a past we did not
-- see. Hydra knows it: the job's newest successful build (`/job/…/latest`)
-- and the evals that contain it (`jobsetevals`), and the build of the eval
-- after it (`/eval/{id}/job/{job}`), whose queue time is when the failure
-- began. One row per such job, learned once, within the request budget.
CREATE TABLE job_origins (
    job_id             INTEGER PRIMARY KEY REFERENCES jobs (id),
    build_id           INTEGER NOT NULL,  -- the failing build of the first stored eval
    learned_at         INTEGER NOT NULL,  -- Unix s
    since              INTEGER NOT NULL,  -- when the failure began (Unix s), or the horizon
    since_eval         INTEGER,           -- Hydra eval id where it began, when known
    evals_before       INTEGER NOT NULL,  -- evals of the failure before the first stored one
    derivations_before INTEGER NOT NULL,  -- failing derivations before the stored ones (at least)
    last_success_build INTEGER,           -- Hydra's newest successful build of the job
    last_success_eval  INTEGER,           -- the newest eval that contained it
    last_success_time  INTEGER,           -- when it finished (Unix s)
    beyond_horizon     INTEGER NOT NULL   -- 1: it began before the horizon; `since` is the horizon
);

-- version 9: when Hydra last checked each jobset

-- A page of `/jobset/…/evals` carries every build id of its 20 evals (57 MB
-- of JSON for trunk): it is read only when Hydra's `lastcheckedtime` for the
-- jobset (`/api/jobsets`, a few KB) moved since the last complete discovery.
ALTER TABLE jobsets ADD COLUMN hydra_checked_at INTEGER;

-- version 10: builds that change after the fact, and renamed jobsets

-- Hydra changes a build after the fact: a restart sets `finished = 0` and
-- keeps the old status and times until it finishes again (NixOS/hydra
-- `Helper/Nix.pm` `restartBuilds`); an eval that reuses a build by output
-- path repoints it at a new derivation with `finished = 0` and no status
-- (`script/hydra-eval-jobset` `applyDrvPathRepoints`). Such a change is a
-- new *version* of the build: `builds` holds the newest one (its number in
-- `version`), `build_versions` the ones it replaced, and each span names
-- the version it saw. A change is recorded from the eval where it was seen
-- on (the job's open span is closed and a new one opened), so the evals
-- before it keep the result they had. Finishing for the first time is not
-- a new version: it completes the one that was pending.
ALTER TABLE builds ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE spans ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

CREATE TABLE build_versions (
    build_id INTEGER NOT NULL REFERENCES builds (id),
    version  INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    status   INTEGER,
    stoptime INTEGER,
    drv_hash TEXT NOT NULL,
    PRIMARY KEY (build_id, version)
) WITHOUT ROWID;

-- What a span saw: its build as of the span's version.
CREATE VIEW span_builds AS
SELECT s.job_id, s.first_seq, s.last_seq, s.build_id, s.version,
       CASE WHEN v.build_id IS NULL THEN b.finished ELSE v.finished END AS finished,
       CASE WHEN v.build_id IS NULL THEN b.status ELSE v.status END AS status,
       CASE WHEN v.build_id IS NULL THEN b.stoptime ELSE v.stoptime END AS stoptime,
       CASE WHEN v.build_id IS NULL THEN b.drv_hash ELSE v.drv_hash END AS drv_hash
FROM spans s
JOIN builds b ON b.id = s.build_id
LEFT JOIN build_versions v ON v.build_id = s.build_id AND v.version = s.version AND s.version != b.version;

-- Failed builds of the newest eval are asked about again in rounds (a
-- restart or a repoint changes them): a round starts every
-- `recheck_after_secs` (`rechecked_at`) and goes through them in id order,
-- `recheck_budget` a pass; `recheck_cursor` is the last build id done, NULL
-- between rounds. It is written with the statuses it covers, so a killed
-- round resumes where it stopped.
ALTER TABLE jobsets ADD COLUMN recheck_cursor INTEGER;

-- A jobset renamed on Hydra: its old URLs redirect (301) and its builds
-- report the new name (`Controller/Jobset.pm` `jobsetChain`, `Builds.pm`
-- `as_json`). The history stays on this row; `renamed_to` is the name Hydra
-- uses now, until the configuration says so too.
ALTER TABLE jobsets ADD COLUMN renamed_to TEXT;

-- version 11: early warnings (action kind `warn`)

-- An early warning about a pre-merge branch (staging-next) is a ledger
-- action of its own kind. SQLite cannot alter a CHECK constraint, so the
-- table is rebuilt with the wider one and every row copied as it is (ids
-- kept: opt-outs, commands and the engine refer to them).
CREATE TABLE actions_v8 (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('notify', 'remind', 'mark_broken', 'close_pr', 'retire', 'escalate', 'hold', 'warn')),
    attr          TEXT,                  -- NULL for a hold
    systems       TEXT NOT NULL,         -- JSON array of systems, sorted
    all_platforms INTEGER NOT NULL DEFAULT 0,
    step          TEXT,                  -- notice, remind-7d, retire-warning, update-EVAL, ...
    batch         TEXT,                  -- the plan's PR batch key; for a warning, its branch
    state         TEXT NOT NULL CHECK (state IN ('intent', 'done', 'failed', 'open', 'merged', 'closed')),
    planned_at    INTEGER NOT NULL,
    done_at       INTEGER,
    closed_at     INTEGER,
    pr            INTEGER,
    issue         INTEGER,
    pinged        TEXT NOT NULL DEFAULT '[]',
    error         TEXT,
    refused       TEXT
);
INSERT INTO actions_v8 (id, kind, attr, systems, all_platforms, step, batch, state,
                        planned_at, done_at, closed_at, pr, issue, pinged, error, refused)
    SELECT id, kind, attr, systems, all_platforms, step, batch, state,
           planned_at, done_at, closed_at, pr, issue, pinged, error, refused
    FROM actions;
DROP TABLE actions;
ALTER TABLE actions_v8 RENAME TO actions;
CREATE INDEX actions_by_attr ON actions (attr, kind);
CREATE INDEX actions_by_pr ON actions (pr);

-- version 12: what GitHub last told us, so a quiet cycle asks only what changed

-- The forge's memo (JSON, shaped and owned by `forge::Memo`): the bot's own
-- issues and pull requests with GitHub's `updated_at`, what was read for
-- them, and the ETags of the listing's pages. The next cycle lists only what
-- changed `since` (a 304 to `If-None-Match` costs no quota). Only a cache:
-- a missing or unreadable row costs one full listing, never a wrong action.
CREATE TABLE forge_memo (
    repo     TEXT PRIMARY KEY,           -- owner/name acted on
    memo     TEXT NOT NULL,              -- JSON
    saved_at INTEGER NOT NULL            -- Unix s, wall clock
);

-- version 13: why a build failed, as its Hydra build page says

-- Hydra copies a dependency's failure code onto dependents (only 1 becomes
-- 2), so a 7, 8, 10, 11 or 12 may be a dependency's; only the HTML build
-- page tells, in its failed steps ("propagated from build N"). Each page is
-- read once per build and status: `status` is the build's status when the
-- page was read, and a cause whose build has since finished with another
-- status (a restart) is read again.
CREATE TABLE build_causes (
    build_id        INTEGER PRIMARY KEY,  -- Hydra's build id
    status          INTEGER NOT NULL,     -- the build's buildstatus when read
    cause           TEXT NOT NULL CHECK (cause IN ('own', 'propagated', 'unknown')),
    propagated_from INTEGER,              -- the build whose step failed ('propagated')
    step_status     TEXT,                 -- the failed step's status, as Hydra words it
    read_at         INTEGER NOT NULL      -- Unix s
);

-- version 14: the eval being learned over several passes

-- An eval too big to ask for whole is learned build by build over many
-- passes. Its header and build ids (2–3 MB of JSON for trunk) are kept
-- here, so that those passes need not read the evals page again (57 MB for
-- trunk) while Hydra has not checked the jobset since. Removed once the
-- eval is stored.
CREATE TABLE pending_evals (
    jobset_id INTEGER PRIMARY KEY REFERENCES jobsets (id),
    eval_id   INTEGER NOT NULL,          -- Hydra's eval id
    header    TEXT NOT NULL,             -- the eval as the evals page had it, build ids included
    saved_at  INTEGER NOT NULL           -- Unix s
);

-- version 15: indexes for the queries every cycle makes

-- The open spans (a job's build in the newest eval) are a small part of
-- all spans once history grows: ingest, rechecks, `status` and the plan read
-- them by job without walking each job's closed spans.
CREATE INDEX spans_open ON spans (job_id, build_id, version) WHERE last_seq IS NULL;
-- The spans that ended recently: what a plan reads of jobs that build
-- (see `Store::plan_facts`), without scanning the older history.
CREATE INDEX spans_closed_by_last ON spans (last_seq) WHERE last_seq IS NOT NULL;
-- A jobset's jobs (the UNIQUE index leads with the attribute).
CREATE INDEX jobs_by_jobset ON jobs (jobset_id);

-- version 16: what a plan needs to know of a span without reading its build

-- A plan reads the history of the jobs that fail and of nothing else (see
-- `Store::plan_facts`). Whether a span's build succeeded lives in `builds`,
-- so telling the failing spans from the 300,000 that build meant joining
-- every open span with its build each cycle. Two facts are kept on the
-- span itself instead, each only ever a hint in the safe direction:
--
-- `built`: 1 when the build, as this span saw it (its version), finished
-- and succeeded (status 0). 0 otherwise, and whenever unsure: a 0 only
-- makes a plan read that job in full, while a wrong 1 would hide a failure,
-- so nothing but a success sets it. The writer sets it with the span; a
-- build that completes in place (pending, then finished: the only change
-- Hydra makes to a build without a new version) updates its spans by the
-- trigger below.
--
-- `job_left`: 1 when the span ended because its job was in no later eval
-- (the attribute left the jobset, for now at least).
ALTER TABLE spans ADD COLUMN built INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spans ADD COLUMN job_left INTEGER NOT NULL DEFAULT 0;

UPDATE spans SET built = 1
WHERE EXISTS (
    SELECT 1 FROM span_builds sb
    WHERE sb.job_id = spans.job_id AND sb.first_seq = spans.first_seq
      AND sb.finished = 1 AND sb.status = 0);
UPDATE spans SET job_left = 1
WHERE last_seq IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM spans later
      WHERE later.job_id = spans.job_id AND later.first_seq > spans.first_seq);

CREATE TRIGGER spans_follow_their_build_completing
AFTER UPDATE OF finished, status ON builds
BEGIN
    UPDATE spans SET built = (NEW.finished = 1 AND NEW.status IS 0)
    WHERE job_id = NEW.job_id AND build_id = NEW.id AND version = NEW.version;
END;

-- The newest eval's jobs that do not build: the few whose whole history a
-- plan reads.
CREATE INDEX spans_open_unbuilt ON spans (job_id) WHERE last_seq IS NULL AND built = 0;
-- Runs that did not build and ended recently: the jobs a plan reads over
-- its window.
CREATE INDEX spans_closed_unbuilt ON spans (last_seq) WHERE last_seq IS NOT NULL AND built = 0;
-- Jobs that left the jobset while they failed.
CREATE INDEX spans_left_unbuilt ON spans (job_id) WHERE job_left = 1 AND built = 0;

-- version 17: what a plan reads of long failures, kept; a covering index

-- A plan reads each failing job's newest failure from the run that built
-- before it (see `Store::plan_facts`): a year-old failure is a dozen spans,
-- each joined with its build somewhere in a `builds` table far bigger than
-- the page cache, and that was most of a plan's cost at a year. A plan on
-- the writer's connection keeps what it read of a job's closed spans here,
-- and later plans read this row instead of those spans.
--
-- Only a cache, derived from `spans`, `builds`, `build_versions` and
-- `build_causes`: it may be dropped or emptied at any time, and a plan
-- without a row reads the spans. A row holds the runs, exactly as a plan
-- reads them, of every span of the job with `from_seq <= first_seq <
-- upto_seq`, all of them closed when the row was written (closed spans are
-- never reopened, and new spans open only at the newest eval, after
-- `upto_seq`). Whatever would change what those spans read deletes the
-- row: the triggers below.
CREATE TABLE history_memo (
    job_id   INTEGER PRIMARY KEY,         -- jobs (id)
    from_seq INTEGER NOT NULL,
    upto_seq INTEGER NOT NULL,
    runs     TEXT NOT NULL                -- JSON, written and read by `store::facts`
);

-- A build completing in place, a restart or a repoint (a new version):
-- a build's spans are all its job's.
CREATE TRIGGER history_memo_forgets_a_changed_build
AFTER UPDATE OF finished, status, drv_hash, version ON builds
BEGIN
    DELETE FROM history_memo WHERE job_id IN (OLD.job_id, NEW.job_id);
END;
CREATE TRIGGER history_memo_forgets_a_new_build_version
AFTER INSERT ON build_versions
BEGIN
    DELETE FROM history_memo WHERE job_id = (SELECT job_id FROM builds WHERE id = NEW.build_id);
END;
CREATE TRIGGER history_memo_forgets_a_removed_build_version
AFTER DELETE ON build_versions
BEGIN
    DELETE FROM history_memo WHERE job_id = (SELECT job_id FROM builds WHERE id = OLD.build_id);
END;
-- A build page read (or read again after a restart), or pruned.
CREATE TRIGGER history_memo_forgets_a_cause_read
AFTER INSERT ON build_causes
BEGIN
    DELETE FROM history_memo WHERE job_id = (SELECT job_id FROM builds WHERE id = NEW.build_id);
END;
CREATE TRIGGER history_memo_forgets_a_cause_changed
AFTER UPDATE ON build_causes
BEGIN
    DELETE FROM history_memo
    WHERE job_id IN (SELECT job_id FROM builds WHERE id IN (OLD.build_id, NEW.build_id));
END;
CREATE TRIGGER history_memo_forgets_a_cause_removed
AFTER DELETE ON build_causes
BEGIN
    DELETE FROM history_memo WHERE job_id = (SELECT job_id FROM builds WHERE id = OLD.build_id);
END;
-- Spans pruned, or a closed span changed (the writer never changes one:
-- it closes open spans and moves open spans to a new version).
CREATE TRIGGER history_memo_forgets_a_removed_span
AFTER DELETE ON spans
BEGIN
    DELETE FROM history_memo WHERE job_id = OLD.job_id;
END;
CREATE TRIGGER history_memo_forgets_a_changed_closed_span
AFTER UPDATE OF job_id, first_seq, last_seq, build_id, version ON spans
WHEN OLD.last_seq IS NOT NULL
BEGIN
    DELETE FROM history_memo WHERE job_id IN (OLD.job_id, NEW.job_id);
END;

-- The newest eval's jobs that do not build, read by every plan, now with
-- every column the query tests: SQLite reads the index alone. On `(job_id)`
-- it looked each span up in the table (it does not drop `last_seq IS NULL`
-- as implied by the index), a page per failing job: 16,000 pages at a
-- year of trunk, and more as the table grows.
DROP INDEX spans_open_unbuilt;
CREATE INDEX spans_open_unbuilt ON spans (job_id, last_seq, built) WHERE last_seq IS NULL AND built = 0;

-- version 18: the jobs' name index, named

-- The UNIQUE constraint of `jobs` came with an index SQLite cannot drop.
-- Named, the writer can drop it for an eval that brings more new jobs than
-- the store holds (a jobset's first eval: 290,000 for trunk) and create it
-- again at commit: one sort instead of a random insert per new job, which
-- was a third of writing such an eval (see `store::write::NameIndex`).
-- Same columns in the same order, same uniqueness. SQLite cannot drop a
-- constraint, so the table is rebuilt with the same ids, as
-- https://sqlite.org/lang_altertable.html#otheralter describes, with
-- foreign key checks off (`Store::open` runs migrations so).
CREATE TABLE jobs_v18 (
    id        INTEGER PRIMARY KEY,
    jobset_id INTEGER NOT NULL REFERENCES jobsets (id),
    attr      TEXT NOT NULL,             -- attribute path, e.g. python3Packages.foo
    system    TEXT NOT NULL,             -- e.g. x86_64-linux
    suffixed  INTEGER NOT NULL           -- 1 when Hydra's job name is attr.system
);
INSERT INTO jobs_v18 (id, jobset_id, attr, system, suffixed)
    SELECT id, jobset_id, attr, system, suffixed FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v18 RENAME TO jobs;
-- Attribute first: `history ATTR` looks jobs up by attribute.
CREATE UNIQUE INDEX jobs_by_name ON jobs (attr, system, jobset_id, suffixed);
-- A jobset's jobs.
CREATE INDEX jobs_by_jobset ON jobs (jobset_id);
