//! `zonectl`, the Zones operator CLI. One module per verb (`run`, `ps`, `logs`, `stop`, `rm`,
//! `inspect`, the hidden `supervise`, `image <verb>`); the rest are the pieces
//! the verbs share: the zone state directory, the VMM process, the agent's lifeline and gRPC client,
//! and attaching a zone process to the terminal.

pub mod agent_client;
pub mod attach;
pub mod attest;
pub mod authority_args;
pub mod boot_facts;
pub mod cli;
pub mod exec;
pub mod identity;
pub mod identity_plan;
pub mod image;
pub mod inspect;
pub mod interrupt;
pub mod isolation_args;
pub mod kill;
pub mod lifeline;
pub mod logs;
pub mod network;
pub mod ps;
pub mod raw_terminal;
pub mod reference;
pub mod rm;
pub mod run;
pub mod size;
pub mod stats;
pub mod stop;
pub mod supervise;
pub mod timing;
pub mod verify;
pub mod vmm_process;
pub mod workload;
pub mod zone_dir;
pub mod zone_proc;
pub mod zone_state;
