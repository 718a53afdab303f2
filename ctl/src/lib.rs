//! `zonectl`, the Zones operator CLI. One module per verb (`run`, `image <verb>`); the rest are the pieces
//! the verbs share: the zone state directory, the VMM process and the agent connection.

pub mod agent_conn;
pub mod cli;
pub mod image;
pub mod interrupt;
pub mod run;
pub mod size;
pub mod vmm_process;
pub mod workload;
pub mod zone_dir;
