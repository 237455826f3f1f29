//! Config layering (defaults < file < env < CLI), validation messages, redaction and the CLI
//! definitions. Env precedence is tested in a child process so this process's env is never
//! changed.

use std::path::PathBuf;

use clap::Parser;
use robo_core::commission::CommissionModel;
use robo_core::sizing::SizingConfig;
use robo_core::strategy::{MomentumParams, SmaCrossoverParams, StrategyConfig};
use robo_trader::cli::{Cli, Command, ConfigCommand, KillSwitchSetting, RunArgs};
use robo_trader::config::{
    load, load_from_str, parse_toml, redacted_toml, BrokerKind, ClockKind, Config, ConfigError,
    SimSpeed,
};
use rust_decimal_macros::dec;

fn defaults() -> Config {
    load_from_str("", None, &RunArgs::default()).expect("defaults are valid")
}

fn err(text: &str, args: &RunArgs) -> ConfigError {
    match load_from_str(text, None, args) {
        Ok(cfg) => panic!("expected an error for {text:?} / {args:?}, got {cfg:?}"),
        Err(e) => e,
    }
}

fn run_args(argv: &[&str]) -> RunArgs {
    let mut full = vec!["robo-trader", "run"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full).expect("parses").command {
        Command::Run(a) => a,
        other => panic!("not run: {other:?}"),
    }
}

#[test]
fn defaults_are_the_products() {
    let c = defaults();
    let expected = [
        "AAPL", "NVDA", "TSLA", "IXHL", "NUAI", "BZAI", "ELTP", "OPEN", "CEG", "VRT", "PLTR",
        "UPST", "TEM", "HTFL", "SDGR", "APLD", "SOFI", "CORZ", "WULF", "QQQ", "SPY", "MSFT",
    ];
    assert_eq!(c.symbols, expected);
    assert_eq!(c.symbols.len(), 22);
    assert_eq!(c.starting_cash, dec!(100000));
    assert_eq!(
        c.strategy,
        StrategyConfig::SmaCrossover(SmaCrossoverParams { fast: 10, slow: 20 })
    );
    assert_eq!(
        (c.web.dash_host.as_str(), c.web.dash_port, c.web.ws_port),
        ("127.0.0.1", 5555, 8765)
    );
    assert_eq!(c.db, PathBuf::from("./robo-trader.db"));
    assert_eq!(c.broker, BrokerKind::Sim);
    assert_eq!(c.bar_seconds, 60);
    assert!(c.decisions);
    assert_eq!(c.sim.speed, SimSpeed::Factor(60.0));
    assert_eq!((c.sim.seed, c.sim.history_sessions), (42, 2));
    assert_eq!(
        c.sim.clock,
        Some(ClockKind::Sim),
        "load pins the clock the sim broker implies"
    );
    assert_eq!(
        (c.ib.host.as_str(), c.ib.port, c.ib.client_id),
        ("127.0.0.1", 4002, 10)
    );
    assert_eq!(c.ib.account, None);
    assert_eq!(
        (c.log.level.as_str(), c.log.max_file_mb, c.log.max_files),
        ("info", 10, 5)
    );
    assert_eq!(c.log.file, None);
    assert_eq!(c.risk.max_position_pct, dec!(0.02));
    assert_eq!(
        c.sizing,
        SizingConfig::FixedFraction {
            fraction: dec!(0.02)
        }
    );
}

#[test]
fn file_overrides_defaults_and_leaves_the_rest() {
    let text = r#"
symbols = ["msft", " spy "]
starting_cash = 25000.50
decisions = false

[strategy]
name = "sma_crossover"
fast = 5
slow = 30

[risk]
max_position_pct = 0.05

[sizing]
mode = "fixed_fraction"
fraction = 0.03

[paper.commission]
model = "bps"
bps = 2

[sim]
speed = "max"
start = "2025-03-03T14:30:00Z"

[web]
dash_port = 6000

[ib]
account = "DU1234567"
client_ids = [11, 12]
"#;
    let c = load_from_str(text, None, &RunArgs::default()).unwrap();
    assert_eq!(c.symbols, ["MSFT", "SPY"]);
    assert_eq!(c.starting_cash, dec!(25000.50));
    assert!(!c.decisions);
    assert_eq!(
        c.strategy,
        StrategyConfig::SmaCrossover(SmaCrossoverParams { fast: 5, slow: 30 })
    );
    assert_eq!(c.risk.max_position_pct, dec!(0.05));
    assert_eq!(
        c.risk.max_open_positions, 20,
        "untouched risk keys keep their defaults"
    );
    assert_eq!(
        c.sizing,
        SizingConfig::FixedFraction {
            fraction: dec!(0.03)
        }
    );
    assert_eq!(c.paper.commission, CommissionModel::Bps { bps: dec!(2) });
    assert_eq!(c.sim.speed, SimSpeed::Max);
    assert_eq!(c.sim.start.as_deref(), Some("2025-03-03T14:30:00Z"));
    assert_eq!(c.web.dash_port, 6000);
    assert_eq!(c.web.ws_port, 8765);
    assert_eq!(c.ib.account.as_deref(), Some("DU1234567"));
    assert_eq!(c.ib.client_ids, [11, 12]);
}

#[test]
fn config_file_is_read_from_the_given_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.toml");
    std::fs::write(&path, "[web]\nws_port = 9001\n").unwrap();
    let c = load(Some(&path), &RunArgs::default()).unwrap();
    assert_eq!(c.web.ws_port, 9001);

    let missing = dir.path().join("nope.toml");
    let e = load(Some(&missing), &RunArgs::default()).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("nope.toml"), "{e}");

    std::fs::write(&path, "[risk]\nmax_postion_pct = 0.05\n").unwrap();
    let e = load(Some(&path), &RunArgs::default()).unwrap_err();
    assert!(
        e.to_string()
            .ends_with(&format!("(at {}:2)", path.display())),
        "{e}"
    );
}

const FILE: &str =
    "symbols = [\"AAPL\"]\n[web]\ndash_port = 6000\nws_port = 6001\n[sim]\nseed = 7\n";

#[test]
fn flags_override_the_file() {
    let args = run_args(&[
        "--symbols",
        "msft, spy,,",
        "--dash-port",
        "7000",
        "--cash",
        "5000",
        "--strategy",
        "momentum",
        "--sim-speed",
        "max",
        "--db",
        "/tmp/x.db",
        "--no-decisions",
        "--client-id",
        "12",
        "--broker",
        "ibkr",
        "--log-level",
        "debug",
    ]);
    let c = load_from_str(FILE, None, &args).unwrap();
    assert_eq!(c.symbols, ["MSFT", "SPY"]);
    assert_eq!(c.web.dash_port, 7000);
    assert_eq!(
        c.web.ws_port, 6001,
        "not given on the CLI: the file's value"
    );
    assert_eq!(c.sim.seed, 7);
    assert_eq!(c.starting_cash, dec!(5000));
    assert_eq!(
        c.strategy,
        StrategyConfig::Momentum(MomentumParams::default())
    );
    assert_eq!(c.sim.speed, SimSpeed::Max);
    assert_eq!(c.db, PathBuf::from("/tmp/x.db"));
    assert!(!c.decisions);
    assert_eq!(c.ib.client_id, 12);
    assert_eq!(c.broker, BrokerKind::Ibkr);
    assert_eq!(
        c.sim.clock,
        Some(ClockKind::Real),
        "a gateway runs on the real clock"
    );
    assert_eq!(c.log.level, "debug");
}

#[test]
fn same_strategy_flag_keeps_the_files_parameters() {
    let text = "[strategy]\nname = \"sma_crossover\"\nfast = 3\nslow = 9\n";
    let c = load_from_str(text, None, &run_args(&["--strategy", "sma_crossover"])).unwrap();
    assert_eq!(
        c.strategy,
        StrategyConfig::SmaCrossover(SmaCrossoverParams { fast: 3, slow: 9 })
    );
}

/// Runs in a child process with the env set by [`env_beats_file_and_cli_beats_env`].
#[test]
#[ignore = "run by env_beats_file_and_cli_beats_env in a child process"]
fn child_prints_effective_config() {
    if std::env::var_os("ROBO_CONFIG_TEST_CHILD").is_none() {
        return;
    }
    let args = run_args(&["--ws-port", "9100"]);
    let c = load_from_str(FILE, None, &args).unwrap();
    println!(
        "EFFECTIVE dash={} ws={} symbols={} seed={} cash={}",
        c.web.dash_port,
        c.web.ws_port,
        c.symbols.join(","),
        c.sim.seed,
        c.starting_cash
    );
}

#[test]
fn env_beats_file_and_cli_beats_env() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "child_prints_effective_config",
            "--ignored",
            "--nocapture",
        ])
        .env("ROBO_CONFIG_TEST_CHILD", "1")
        .env("DASH_PORT", "7000")
        .env("WS_PORT", "7001")
        .env("ROBO_SYMBOLS", "nvda,tsla")
        .env_remove("ROBO_SIM_SEED")
        .env_remove("ROBO_CASH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // DASH_PORT and ROBO_SYMBOLS beat the file; --ws-port beats WS_PORT; seed comes from the
    // file; cash from the defaults.
    assert!(
        stdout.contains("EFFECTIVE dash=7000 ws=9100 symbols=NVDA,TSLA seed=7 cash=100000\n"),
        "{stdout}"
    );
}

#[test]
fn unknown_key_is_named_with_the_choices() {
    let e = err("[risk]\nmax_postion_pct = 0.05\n", &RunArgs::default());
    assert_eq!(e.key(), Some("risk.max_postion_pct"));
    let msg = e.to_string();
    assert!(
        msg.starts_with("config error: unknown key `risk.max_postion_pct` (expected one of: "),
        "{msg}"
    );
    assert!(msg.contains("max_position_pct"), "{msg}");
    assert!(msg.ends_with("(line 2)"), "{msg}");

    assert_eq!(
        err("symbol = [\"A\"]\n", &RunArgs::default()).key(),
        Some("symbol")
    );
    let e = err(
        "[strategy]\nname = \"sma_crossover\"\nfats = 3\n",
        &RunArgs::default(),
    );
    assert_eq!(e.key(), Some("strategy.fats"));
    let e = err(
        "[strategy]\nname = \"combined\"\nmembers = [{name = \"momentum\", rsi_periodx = 3}]\n",
        &RunArgs::default(),
    );
    assert_eq!(e.key(), Some("strategy.members[0].rsi_periodx"));
}

#[test]
fn a_string_where_a_decimal_belongs_names_the_key() {
    let e = err("[risk]\nmax_position_pct = \"abc\"\n", &RunArgs::default());
    assert_eq!(
        e.to_string(),
        "config error: risk.max_position_pct: expected a decimal number like 0.02, got \"abc\" (line 2)"
    );
    let e = err(
        "[sizing]\nmode = \"fixed_fraction\"\nfraction = \"abc\"\n",
        &RunArgs::default(),
    );
    assert_eq!(e.key(), Some("sizing.fraction"));
    let e = err(
        "[paper.commission]\nmodel = \"bps\"\nbps = true\n",
        &RunArgs::default(),
    );
    assert_eq!(e.key(), Some("paper.commission.bps"));
    let e = err(
        "[strategy]\nname = \"sma_crossover\"\nfast = \"abc\"\n",
        &RunArgs::default(),
    );
    assert_eq!(e.key(), Some("strategy.fast"));
}

#[test]
fn empty_symbols_flag_is_refused() {
    for list in ["", " , ,"] {
        let e = err("", &run_args(&["--symbols", list]));
        assert_eq!(
            e.to_string(),
            "config error: --symbols/ROBO_SYMBOLS: the list is empty"
        );
    }
    let e = err("symbols = []\n", &RunArgs::default());
    assert_eq!(e.to_string(), "config error: symbols: symbol list is empty");
    let e = err("", &run_args(&["--symbols", "AAPL,aapl"]));
    assert_eq!(e.key(), Some("--symbols/ROBO_SYMBOLS"));
}

#[test]
fn port_out_of_range_names_the_flag_or_key() {
    let e = err("", &run_args(&["--dash-port", "70000"]));
    assert_eq!(
        e.to_string(),
        "config error: --dash-port/DASH_PORT: 70000 is out of range (0-65535)"
    );
    let e = err("", &run_args(&["--ws-port", "-1"]));
    assert_eq!(
        e.to_string(),
        "config error: --ws-port/WS_PORT: -1 is out of range (0-65535)"
    );
    let e = err("", &run_args(&["--ib-port", "0"]));
    assert_eq!(e.key(), Some("--ib-port/IB_PORT"));
    let e = err("[web]\ndash_port = 70000\n", &RunArgs::default());
    assert_eq!(
        e.to_string(),
        "config error: web.dash_port: 70000 is out of range (0-65535) (line 2)"
    );
    let e = err(
        "[web]\ndash_port = 7000\nws_port = 7000\n",
        &RunArgs::default(),
    );
    assert_eq!(e.key(), Some("web.ws_port"));
}

#[test]
fn fast_must_be_below_slow() {
    let e = err(
        "[strategy]\nname = \"sma_crossover\"\nfast = 20\nslow = 20\n",
        &RunArgs::default(),
    );
    assert_eq!(
        e.to_string(),
        "config error: strategy.fast: must be less than slow (20 >= 20)"
    );
    assert_eq!(e.exit_code(), 2);
}

#[test]
fn other_bad_values_name_their_key() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "[risk]\nmax_position_pct = 1.5\n",
            &[],
            "risk.max_position_pct",
        ),
        (
            "[risk]\nmax_position_pct = 0\n",
            &[],
            "risk.max_position_pct",
        ),
        ("starting_cash = -1\n", &[], "starting_cash"),
        ("", &["--cash", "0"], "--cash/ROBO_CASH"),
        ("[sim]\nspeed = 0.5\n", &[], "sim.speed"),
        ("", &["--sim-speed", "0.5"], "--sim-speed/ROBO_SIM_SPEED"),
        ("[sim]\nstart = \"yesterday\"\n", &[], "sim.start"),
        (
            "",
            &["--sim-start", "2025-13-01"],
            "--sim-start/ROBO_SIM_START",
        ),
        ("", &["--strategy", "nope"], "--strategy/ROBO_STRATEGY"),
        ("[strategy]\nname = \"nope\"\n", &[], "strategy.name"),
        ("[strategy]\nfast = 3\n", &[], "strategy.name"),
        ("broker = \"foo\"\n", &[], "broker"),
        (
            "broker = \"ibkr\"\n[sim]\nclock = \"sim\"\n",
            &[],
            "sim.clock",
        ),
        ("", &["--broker", "ibkr", "--clock", "sim"], "sim.clock"),
        (
            "[sizing]\nmode = \"atr_risk\"\nrisk_fraction = 0.01\n",
            &[],
            "sizing.atr_multiple",
        ),
        (
            "[sizing]\nmode = \"fixed_fraction\"\nfraction = 2\n",
            &[],
            "sizing.fraction",
        ),
        ("[stops]\nstop_loss_pct = 2\n", &[], "stops.stop_loss_pct"),
        ("[paper]\nmax_volume_pct = 0\n", &[], "paper.max_volume_pct"),
        ("[log]\nlevel = \"inf\"\n", &[], "log.level"),
        (
            "",
            &["--log-level", "verbose"],
            "--log-level/ROBO_LOG_LEVEL",
        ),
        ("[log]\nmax_files = 0\n", &[], "log.max_files"),
        ("[ib]\nclient_ids = [1, -2]\n", &[], "ib.client_ids[1]"),
        (
            "",
            &["--client-id", "3000000000"],
            "--client-id/IB_CLIENT_ID",
        ),
        ("", &["--dash-host", " "], "--dash-host/DASH_HOST"),
        ("decisions = \"yes\"\n", &[], "decisions"),
        ("bar_seconds = 0\n", &[], "bar_seconds"),
    ];
    for (text, argv, key) in cases {
        let e = err(text, &run_args(argv));
        assert_eq!(e.key(), Some(*key), "{text:?} {argv:?}: {e}");
        assert!(
            e.to_string().starts_with(&format!("config error: {key}: ")),
            "{e}"
        );
        assert_eq!(e.exit_code(), 2);
    }
}

#[test]
fn syntax_error_is_reported_with_its_line() {
    let e = err("[risk\n", &RunArgs::default());
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn garbage_never_panics() {
    // Fragments of plausible and implausible TOML, combined deterministically.
    let parts = [
        "[risk]\n",
        "[strategy]\n",
        "name = \"combined\"\n",
        "members = [1, {name = 2}]\n",
        "max_position_pct = 1e400\n",
        "fast = -1\n",
        "[sim]\nspeed = nan\n",
        "speed = inf\n",
        "[web]\n",
        "dash_port = 99999999999999999999\n",
        "[[ib]]\n",
        "x = { a = [[[]]] }\n",
        "symbols = [\"\u{0}\", \"ÄÖ\"]\n",
        "\u{feff}",
        "= =\n",
        "[paper.commission]\nmodel = 1\n",
        "[sizing]\nmode = \"half_kelly\"\ncap_fraction = -0\nmin_trades = -3\n",
        "'''\n",
        "starting_cash = \"79228162514264337593543950336\"\n",
        "[log]\nlevel = \"\"\n",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..400 {
        let mut text = String::new();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(parts[(seed % parts.len() as u64) as usize]);
        }
        let _ = load_from_str(&text, None, &RunArgs::default());
    }
}

#[test]
fn redacted_toml_hides_secrets_and_parses_back() {
    let mut c = defaults();
    c.ib.account = Some("DU1234567".into());
    c.web.api_token = Some("tok-abc".into());
    let text = redacted_toml(&c);
    assert!(
        !text.contains("DU1234567") && !text.contains("tok-abc"),
        "{text}"
    );
    assert!(text.contains("account = \"<redacted>\""), "{text}");
    assert!(text.contains("api_token = \"<redacted>\""), "{text}");

    let d = defaults();
    let back = load_from_str(&redacted_toml(&d), None, &RunArgs::default()).unwrap();
    assert_eq!(back, d);
    assert_eq!(parse_toml(&redacted_toml(&d), None).unwrap(), d);
}

#[test]
fn a_non_default_config_round_trips() {
    let text = r#"
broker = "ibkr"
[strategy]
name = "combined"
method = "weighted"
weights = [1.0, 2.0]
members = [{ name = "momentum", rsi_period = 7 }, { name = "breakout" }]
[sizing]
mode = "atr_risk"
risk_fraction = 0.01
atr_multiple = 2
[stops]
take_profit_pct = 0.1
trailing_pct = 0.03
[paper]
fill = "close"
slippage_bps = 1.5
max_volume_pct = 0.25
[paper.commission]
model = "per_share"
rate = 0.005
[sim]
speed = 120
data = "bars/"
[log]
file = "logs/robo.log"
"#;
    let c = load_from_str(text, None, &RunArgs::default()).unwrap();
    let StrategyConfig::Combined(p) = &c.strategy else {
        panic!("{:?}", c.strategy)
    };
    assert_eq!(p.members.len(), 2);
    assert_eq!(
        p.members[0],
        StrategyConfig::Momentum(MomentumParams {
            rsi_period: 7,
            ..Default::default()
        })
    );
    assert_eq!(
        c.sizing,
        SizingConfig::AtrRisk {
            risk_fraction: dec!(0.01),
            atr_multiple: dec!(2)
        }
    );
    assert_eq!(
        c.paper.commission,
        CommissionModel::PerShare { rate: dec!(0.005) }
    );
    assert_eq!(c.paper.slippage_bps, dec!(1.5));
    assert_eq!(c.stops.stop_loss_pct, Some(dec!(0.02)));
    assert_eq!(c.sim.speed, SimSpeed::Factor(120.0));
    let back = load_from_str(&redacted_toml(&c), None, &RunArgs::default()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn cli_shapes() {
    let cli = Cli::try_parse_from([
        "robo-trader",
        "config",
        "show",
        "--cash",
        "5000",
        "--config",
        "x.toml",
    ])
    .unwrap();
    assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
    let Command::Config(ConfigCommand::Show(a)) = cli.command else {
        panic!()
    };
    assert_eq!(a.cash, Some(dec!(5000)));

    let cli =
        Cli::try_parse_from(["robo-trader", "kill-switch", "reduce-only", "--db", "a.db"]).unwrap();
    let Command::KillSwitch(k) = cli.command else {
        panic!()
    };
    assert_eq!(k.setting, KillSwitchSetting::ReduceOnly);
    assert_eq!(
        k.setting.trading_state(),
        robo_core::types::TradingState::ReduceOnly
    );
    assert_eq!(k.db, Some(PathBuf::from("a.db")));

    let cli = Cli::try_parse_from([
        "robo-trader",
        "market-hours",
        "--at",
        "2025-07-04T15:00:00-04:00",
        "--json",
    ])
    .unwrap();
    let Command::MarketHours(m) = cli.command else {
        panic!()
    };
    assert!(m.json);
    assert_eq!(m.at.unwrap().to_rfc3339(), "2025-07-04T19:00:00+00:00");

    let cli = Cli::try_parse_from(["robo-trader", "status", "--json"]).unwrap();
    assert!(matches!(cli.command, Command::Status(s) if s.json));

    assert!(Cli::try_parse_from(["robo-trader", "run", "--broker", "tws"]).is_err());
    assert!(Cli::try_parse_from(["robo-trader", "run", "--cash", "lots"]).is_err());
    assert!(Cli::try_parse_from(["robo-trader", "run", "--sim-speed", "fast"]).is_err());
    assert!(Cli::try_parse_from(["robo-trader", "kill-switch", "maybe"]).is_err());
    <Cli as clap::CommandFactory>::command().debug_assert();
}

#[test]
fn broker_stops_from_the_file_the_flag_and_the_env() {
    assert!(!defaults().ib.broker_stops);
    let on = "[ib]\nbroker_stops = true\n";
    assert!(
        load_from_str(on, None, &RunArgs::default())
            .unwrap()
            .ib
            .broker_stops
    );
    assert!(
        load_from_str("", None, &run_args(&["--broker-stops"]))
            .unwrap()
            .ib
            .broker_stops
    );
    let off = run_args(&["--broker-stops", "false"]);
    assert!(!load_from_str(on, None, &off).unwrap().ib.broker_stops);
    // The env var, through the binary (this process's env is never changed).
    let dir = tempfile::tempdir().unwrap();
    let show = |env: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_robo-trader"));
        cmd.current_dir(dir.path()).args(["config", "show"]);
        cmd.env_remove("IB_BROKER_STOPS");
        if let Some(v) = env {
            cmd.env("IB_BROKER_STOPS", v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(show(None).contains("broker_stops = false"));
    assert!(show(Some("true")).contains("broker_stops = true"));
}
