# NixOS module: services.hydra-sentinel.
#
# The same two ways to run it as systemd/ offers, with the same hardening:
# a long-running service (mode = "service": hydra-sentinel.service, Type=notify
# with a watchdog) or one cycle every 15 minutes (mode = "timer":
# hydra-sentinel-once.service started by hydra-sentinel-once.timer).
# The configuration is rendered from `settings` to TOML and validated at build
# time with `hydra-sentinel config check`, so a typo fails the system build
# instead of the service start.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkEnableOption
    mkIf
    mkOption
    types
    ;

  cfg = config.services.hydra-sentinel;
  settingsFormat = pkgs.formats.toml { };

  # The unit that runs hydra-sentinel, and so names its credentials directory.
  unit = if cfg.mode == "service" then "hydra-sentinel" else "hydra-sentinel-once";

  configPath = "/etc/hydra-sentinel/hydra-sentinel.toml";

  uncheckedConfig = settingsFormat.generate "hydra-sentinel-unchecked.toml" cfg.settings;

  # `config check` validates the file and the policy file it names, reading
  # nothing else (no database, no token, no network). Cross builds cannot run
  # the host's binary and install the file unchecked.
  configFile =
    if pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform then
      pkgs.runCommand "hydra-sentinel.toml"
        {
          nativeBuildInputs = [ cfg.package ];
          preferLocalBuild = true;
        }
        ''
          hydra-sentinel config check ${uncheckedConfig}
          cp ${uncheckedConfig} $out
        ''
    else
      uncheckedConfig;

  # The port a `[metrics] listen` address binds, for SocketBindAllow=.
  metricsPort = lib.last (lib.splitString ":" cfg.settings.metrics.listen);
  metricsEnabled = cfg.settings.metrics.enabled or true;

  # Shared by both units, copied from systemd/hydra-sentinel.service.
  serviceConfig = {
    # Identity and files: a transient user; writes go to the state directory only.
    DynamicUser = true;
    StateDirectory = "hydra-sentinel";
    StateDirectoryMode = "0700";
    ConfigurationDirectory = "hydra-sentinel";
    ConfigurationDirectoryMode = "0755";
    # The GitHub token, readable only by the service as
    # $CREDENTIALS_DIRECTORY/github-token (used once acting is enabled).
    LoadCredential = lib.optional (
      cfg.githubTokenFile != null
    ) "github-token:${cfg.githubTokenFile}";
    UMask = "0077";

    # Hardening that fits a network client writing only its state directory.
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateUsers = true;
    PrivateIPC = true;
    PrivateMounts = true;
    ProtectHostname = true;
    ProtectClock = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    RestrictAddressFamilies = "AF_INET AF_INET6 AF_UNIX";
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    RemoveIPC = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    KeyringMode = "private";
    DevicePolicy = "closed";
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged @resources"
    ];
    SystemCallErrorNumber = "EPERM";
    SocketBindDeny = "any";
  };
in
{
  options.services.hydra-sentinel = {
    enable = mkEnableOption "hydra-sentinel, which watches Hydra for failing nixpkgs jobs and tells their maintainers";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalMD "hydra-sentinel built from this repository (`nix/package.nix`)";
      description = "The hydra-sentinel package to run.";
    };

    mode = mkOption {
      type = types.enum [
        "service"
        "timer"
      ];
      default = "service";
      description = ''
        `service`: `hydra-sentinel run`, a long-running service (Type=notify,
        watchdog, `systemctl reload` re-reads the configuration, metrics and
        health on `[metrics] listen`), one cycle every `daemon.interval_secs`.
        `timer`: `hydra-sentinel once` from a oneshot unit started every 15
        minutes by `hydra-sentinel-once.timer`; no HTTP endpoint.
      '';
    };

    settings = mkOption {
      description = ''
        The service configuration, rendered to
        `/etc/hydra-sentinel/hydra-sentinel.toml` and checked at build time with
        `hydra-sentinel config check`. Every key is documented in
        `systemd/hydra-sentinel.toml` of the source; unknown keys are refused.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          hydra.contact = "@you:matrix.org";
          jobsets = [ { project = "nixpkgs"; jobset = "trunk"; } ];
          act.enabled = false;
        }
      '';
      type = types.submodule {
        freeformType = settingsFormat.type;
        options = {
          database.path = mkOption {
            type = types.str;
            default = "/var/lib/hydra-sentinel/state.sqlite";
            description = "The SQLite state file; it must be under the state directory, the only place the units may write.";
          };
          metrics.listen = mkOption {
            type = types.str;
            default = "127.0.0.1:9477";
            description = "Where `/metrics` and `/healthz` are served (service mode); the unit allows binding this port only.";
          };
        };
      };
    };

    policyFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = lib.literalExpression "./policy.toml";
      description = ''
        A policy file (see `policies/nixpkgs.toml` of the source for every
        knob), copied into the Nix store, written to `settings.policy.file`
        and validated at build time with the configuration. `null`: the
        policy built into the binary.
      '';
    };

    githubTokenFile = mkOption {
      type = types.nullOr (types.strMatching "/.+");
      default = null;
      example = "/run/secrets/hydra-sentinel-github-token";
      description = ''
        A file with the GitHub token, as an absolute path string so that it
        never enters the Nix store. It is handed to the unit with
        `LoadCredential=github-token:FILE`, and `settings.github.token_file`
        defaults to the credential's path. Only read once
        `settings.act.enabled` is true; `settings.github` must be set too.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.githubTokenFile == null || cfg.settings ? github && cfg.settings.github ? repo;
        message = "services.hydra-sentinel.githubTokenFile is only used with settings.github (repo, fork, push_url).";
      }
      {
        assertion =
          cfg.policyFile == null || lib.hasPrefix builtins.storeDir "${cfg.policyFile}";
        message = "services.hydra-sentinel.policyFile must be a path Nix can copy into the store (e.g. ./policy.toml), so that it is validated with the configuration.";
      }
    ];

    services.hydra-sentinel.settings = {
      policy = mkIf (cfg.policyFile != null) { file = "${cfg.policyFile}"; };
      # systemd hands the credential to the unit at this path
      # ($CREDENTIALS_DIRECTORY/github-token).
      github = mkIf (cfg.githubTokenFile != null) {
        token_file = lib.mkDefault "/run/credentials/${unit}.service/github-token";
      };
    };

    environment.etc."hydra-sentinel/hydra-sentinel.toml".source = configFile;

    # For `hydra-sentinel --config /etc/hydra-sentinel/hydra-sentinel.toml status`.
    environment.systemPackages = [ cfg.package ];

    systemd.services.hydra-sentinel = mkIf (cfg.mode == "service") {
      description = "hydra-sentinel: track failing nixpkgs jobs on Hydra";
      documentation = [ "https://github.com/NixOS/nixpkgs" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      wantedBy = [ "multi-user.target" ];
      # A changed configuration restarts the service: database.path and
      # [metrics] are read at start only.
      restartTriggers = [ configFile ];
      environment.HYDRA_SENTINEL_LOG = "info";
      serviceConfig = serviceConfig // {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = "${lib.getExe cfg.package} --config ${configPath} run";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Restart = "on-failure";
        RestartSec = "30s";
        # READY=1 comes after the database is opened and migrated.
        TimeoutStartSec = "10min";
        # SIGTERM stops the cycle in flight within 5 s; room to wind down.
        TimeoutStopSec = "30s";
        # Pinged only while the loop makes progress; 10 minutes without means
        # a hung download (see systemd/hydra-sentinel.service).
        WatchdogSec = "10min";
        # Only the metrics port may be bound.
        SocketBindAllow = lib.optional metricsEnabled "tcp:${metricsPort}";
      };
    };

    systemd.services.hydra-sentinel-once = mkIf (cfg.mode == "timer") {
      description = "hydra-sentinel: one cycle (ingest, plan, act, digest)";
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      conflicts = [ "hydra-sentinel.service" ];
      environment.HYDRA_SENTINEL_LOG = "info";
      serviceConfig = serviceConfig // {
        Type = "oneshot";
        ExecStart = "${lib.getExe cfg.package} --config ${configPath} once";
        # A first backfill of nixpkgs takes a while; a hung download is cut here.
        TimeoutStartSec = "2h";
      };
    };

    systemd.timers.hydra-sentinel-once = mkIf (cfg.mode == "timer") {
      description = "hydra-sentinel: one cycle every 15 minutes";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "5min";
        OnUnitInactiveSec = "15min";
        RandomizedDelaySec = "1min";
      };
    };
  };
}
