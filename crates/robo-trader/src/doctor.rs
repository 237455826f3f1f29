//! `robo-trader doctor`: a read-only diagnosis of the IB Gateway. (Being built; the argument
//! type and `cmd_doctor` are the contract with `main`.)

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

/// `robo-trader doctor [--json]`
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct DoctorArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// IB Gateway host [default: 127.0.0.1].
    #[arg(long, env = "IB_HOST", value_name = "HOST")]
    pub ib_host: Option<String>,
    /// IB Gateway API port [default: 4002].
    #[arg(long, env = "IB_PORT", value_name = "PORT", allow_negative_numbers = true)]
    pub ib_port: Option<i64>,
    /// API client id for the diagnosis [default: the trader's id + 100].
    #[arg(long, env = "IB_CLIENT_ID", value_name = "N", allow_negative_numbers = true)]
    pub client_id: Option<i64>,
}

pub fn cmd_doctor(_config: Option<&Path>, _args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("doctor is not built yet")
}
