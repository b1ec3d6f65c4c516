//! Integration tests: the real client, the real store and the real binary
//! against a Hydra look-alike on loopback.

mod act;
mod catch_up;
mod causes;
mod changes;
mod cli;
mod daemon;
mod doctor;
mod early_warning;
mod forge;
mod helpers;
mod ingest;
mod kill;
mod policy;
mod site;
mod year;
