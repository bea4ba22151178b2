//! Update downtime benchmark (issue 4): how much time the launcher adds to the backend's own cold start when
//! it updates a running backend.
//!
//! In one run and in alternation, each round measures
//! (a) the example backend's own **cold start**: the binary spawned directly, `GET /health` asked every
//!     millisecond until it answers 200 (spawn → first 200), and
//! (b) a real **update** through the engine: a home with the previous version installed and its backend
//!     running under a [`Supervisor`], the next version published in a folder feed (packed by `pack::pack`
//!     around the same example binary), then `Updater::install_release` with a [`SupervisorGate`]. The
//!     downtime is read from `InstallReport::downtime_ms` and cross-checked by a watcher thread that sees the
//!     old process gone and then the new one answering its health check with the new version.
//!
//! Every round installs a fresh version (1.0.1, 1.0.2, …), so each is a real update. The launcher's added
//! time is the median downtime minus the median cold start; the goal is under 200 ms. The exit code is 1
//! when the goal is missed.
//!
//! Usage: `cargo run --release --example bench_update -- [--rounds N] [--startup-delay-ms N] [--poll-ms N]`
//! (`--startup-delay-ms` makes the example backend wait before it listens, like a model load).
//! `scripts/bench-update.sh` runs it with and without a startup delay.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use personal_ai_agent::config::Config;
use personal_ai_agent::download::CancelToken;
use personal_ai_agent::pack::{PackOptions, pack};
use personal_ai_agent::paths::Paths;
use personal_ai_agent::platform::Platform;
use personal_ai_agent::supervisor::{BackendState, Supervisor, free_loopback_port, is_process_alive};
use personal_ai_agent::updater::{self, SupervisorGate, UpdateEvent, Updater};
use semver::Version;

/// The goal from issue 4: the launcher adds less than this to the backend's own cold start.
const GOAL: Duration = Duration::from_millis(200);
/// How long any one wait in the benchmark may take before the run is declared broken.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

struct Settings {
    rounds: usize,
    startup_delay_ms: u64,
    /// How often the benchmark's own health polls ask (cold start and the watcher).
    poll: Duration,
}

/// What one update round measured.
struct UpdateSample {
    /// `InstallReport::downtime_ms`: the updater's own figure (old stopped → new healthy).
    reported_downtime: Duration,
    /// `InstallReport::time_to_healthy_ms`: spawn → first healthy answer, as the supervisor saw it.
    reported_time_to_healthy: Duration,
    /// The watcher's figure: old process gone → new process answering 200 with the new version.
    watched_downtime: Duration,
    /// `StoppingBackend` → `StartingBackend`: the graceful stop (SIGTERM until reaped), before the window.
    stop: Duration,
    /// `Installing` → `StoppingBackend`: unpacking while the old backend still serves, before the window.
    unpack: Duration,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn settings() -> anyhow::Result<Settings> {
    let mut settings = Settings {
        rounds: 10,
        startup_delay_ms: 0,
        poll: Duration::from_millis(1),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> anyhow::Result<u64> {
            let text = args.next().ok_or_else(|| anyhow!("{name} needs a value"))?;
            text.parse()
                .with_context(|| format!("{name} `{text}` is not a whole number"))
        };
        match arg.as_str() {
            "--rounds" => settings.rounds = usize::try_from(number("--rounds")?)?.max(1),
            "--startup-delay-ms" => settings.startup_delay_ms = number("--startup-delay-ms")?,
            "--poll-ms" => settings.poll = Duration::from_millis(number("--poll-ms")?.max(1)),
            other => bail!(
                "unknown argument `{other}`; usage: bench_update [--rounds N] [--startup-delay-ms N] [--poll-ms N]"
            ),
        }
    }
    Ok(settings)
}

fn run() -> anyhow::Result<bool> {
    let settings = settings()?;
    let backend = example_backend()?;
    let work = tempfile::Builder::new().prefix("bench-update-").tempdir()?;
    let mirror = work.path().join("mirror");
    let versions: Vec<Version> = (0..=settings.rounds)
        .map(|k| Version::new(1, 0, k as u64))
        .collect();
    for version in &versions {
        publish(work.path(), &mirror, &backend, version, settings.startup_delay_ms)?;
    }
    personal_ai_agent::sources::feed::write_feed(&mirror)?;

    let paths = Paths::under(work.path().join("home"));
    let config = Config {
        feed: Some(mirror.display().to_string()),
        backup_count: 2,
        ..Config::default()
    };
    config.save(&paths.config_file())?;
    let updater = Updater::new(&paths, &config)?;
    let supervisor = Supervisor::new(&paths);
    let cancel = CancelToken::new();

    // Version 1.0.0 installed (no backend ran, so the gate leaves none running), then started.
    let (release, asset) = updater
        .target(Some(&versions[0]))?
        .context("the feed does not list 1.0.0")?;
    updater.install_release(
        &release,
        &asset,
        &mut SupervisorGate::new(&supervisor, &paths),
        &cancel,
        &mut |_| {},
    )?;
    let (plan, timeout) =
        updater::launch_plan(&updater::installer(&paths).version_dir(&versions[0]), &paths)?;
    supervisor.start_and_wait(plan, timeout)?;

    eprintln!(
        "{} rounds; example backend startup delay {} ms; load average {}",
        settings.rounds,
        settings.startup_delay_ms,
        load_average()
    );
    let mut cold_starts = Vec::new();
    let mut updates = Vec::new();
    for version in &versions[1..] {
        let cold = cold_start(&backend, version, &settings)?;
        let update = update_to(&updater, &supervisor, &paths, version, &settings, &cancel)?;
        eprintln!(
            "  {version}: cold start {:.1} ms, downtime {} ms reported / {:.1} ms watched, stop {:.1} ms, unpack {:.1} ms",
            ms(cold),
            update.reported_downtime.as_millis(),
            ms(update.watched_downtime),
            ms(update.stop),
            ms(update.unpack)
        );
        cold_starts.push(cold);
        updates.push(update);
    }
    drop(supervisor);

    let column = |pick: fn(&UpdateSample) -> Duration| updates.iter().map(pick).collect::<Vec<_>>();
    let reported = column(|u| u.reported_downtime);
    let watched = column(|u| u.watched_downtime);
    println!(
        "update downtime benchmark: {} rounds, example backend startup delay {} ms, health polled every {} ms by the benchmark",
        settings.rounds,
        settings.startup_delay_ms,
        settings.poll.as_millis()
    );
    println!("load average {}", load_average());
    println!(
        "{:<58} {:>8} {:>8} {:>8} {:>8}",
        "(milliseconds)", "median", "p90", "min", "max"
    );
    let rows: [(&str, Vec<Duration>); 6] = [
        (
            "backend cold start (spawn → first 200, direct)",
            cold_starts.clone(),
        ),
        ("update downtime, InstallReport.downtime_ms", reported.clone()),
        ("update downtime, watched (old gone → new 200)", watched.clone()),
        (
            "  new backend spawn → healthy, as the supervisor saw it",
            column(|u| u.reported_time_to_healthy),
        ),
        (
            "  before the window: graceful stop (SIGTERM → reaped)",
            column(|u| u.stop),
        ),
        (
            "  before the window: unpack while the old one serves",
            column(|u| u.unpack),
        ),
    ];
    for (label, samples) in rows {
        let s = Summary::of(&samples);
        println!(
            "{label:<58} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            ms(s.median),
            ms(s.p90),
            ms(s.min),
            ms(s.max)
        );
    }
    let cold = Summary::of(&cold_starts).median;
    let added_reported = Summary::of(&reported).median.saturating_sub(cold);
    let added_watched = Summary::of(&watched).median.saturating_sub(cold);
    let added = added_reported.max(added_watched);
    let met = added < GOAL;
    println!(
        "launcher adds (median downtime − median cold start): {:.1} ms reported, {:.1} ms watched; goal < {} ms: {}",
        ms(added_reported),
        ms(added_watched),
        GOAL.as_millis(),
        if met { "met" } else { "MISSED" }
    );
    Ok(met)
}

/// The example backend built beside this example (`target/<profile>/examples/agent_backend`).
fn example_backend() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where this benchmark runs from")?;
    let backend = exe
        .parent()
        .context("the benchmark has no folder")?
        .join(format!("agent_backend{}", std::env::consts::EXE_SUFFIX));
    if !backend.is_file() {
        bail!(
            "{} is missing; build it with `cargo build --release --examples`",
            backend.display()
        );
    }
    Ok(backend)
}

/// Packs a bundle of the example backend for `version` into `mirror/<version>`.
fn publish(
    work: &Path,
    mirror: &Path,
    backend: &Path,
    version: &Version,
    delay_ms: u64,
) -> anyhow::Result<()> {
    let bundle = work.join(format!("bundle-{version}"));
    std::fs::create_dir_all(bundle.join("backend"))?;
    let program = format!("backend/agent-backend{}", std::env::consts::EXE_SUFFIX);
    std::fs::copy(backend, bundle.join(&program))
        .with_context(|| format!("cannot copy {} into the bundle", backend.display()))?;
    let agent = serde_json::json!({
        "command": [program, "--port", "{port}", "--agent-version", version.to_string(),
                    "--startup-delay-ms", delay_ms.to_string()],
        "health_url": "http://127.0.0.1:{port}/health",
        "ready_timeout_secs": 30,
        "env": {}
    });
    std::fs::write(bundle.join("agent.json"), serde_json::to_vec_pretty(&agent)?)?;
    pack(&PackOptions {
        version: version.clone(),
        platform: Platform::current(),
        bundle_dir: bundle,
        out_dir: mirror.join(version.to_string()),
        channel: personal_ai_agent::version::Channel::Stable,
        minisign_key: None,
        minisign_password: None,
        published_at: chrono::Utc::now(),
        notes: None,
        also_tar_gz: false,
        delta_from: Vec::new(),
    })?;
    Ok(())
}

/// Spawns the example backend directly and times spawn → first healthy answer.
fn cold_start(backend: &Path, version: &Version, settings: &Settings) -> anyhow::Result<Duration> {
    let port = free_loopback_port()?;
    let started = Instant::now();
    let mut child = Command::new(backend)
        .args([
            "--port",
            &port.to_string(),
            "--agent-version",
            &version.to_string(),
        ])
        .args(["--startup-delay-ms", &settings.startup_delay_ms.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", backend.display()))?;
    let healthy = loop {
        if health_answers(port, version) {
            break Ok(started.elapsed());
        }
        if started.elapsed() > GIVE_UP_AFTER {
            break Err(anyhow!("the example backend never answered on port {port}"));
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow!(
                "the example backend exited ({status}) before it answered"
            ));
        }
        std::thread::sleep(settings.poll);
    };
    let _ = child.kill();
    let _ = child.wait();
    healthy
}

/// Updates the running backend to `version` through the engine, watching the switch from outside.
fn update_to(
    updater: &Updater,
    supervisor: &Supervisor,
    paths: &Paths,
    version: &Version,
    settings: &Settings,
    cancel: &CancelToken,
) -> anyhow::Result<UpdateSample> {
    let old_pid = match supervisor.state() {
        BackendState::Running { pid, .. } => pid,
        other => bail!(
            "the backend should run before an update, but it is {}",
            other.name()
        ),
    };
    let (release, asset) = updater
        .target(Some(version))?
        .with_context(|| format!("the feed does not list {version}"))?;
    let mut installing = None;
    let mut stopping = None;
    let mut starting = None;
    let finished = AtomicBool::new(false);
    let (report, watched) = std::thread::scope(|scope| {
        let watcher = std::thread::Builder::new()
            .name("downtime-watcher".into())
            .spawn_scoped(scope, || {
                watch_switch(old_pid, &paths.run_dir(), version, settings.poll, &finished)
            })?;
        let report = updater.install_release(
            &release,
            &asset,
            &mut SupervisorGate::new(supervisor, paths),
            cancel,
            &mut |event| match event {
                UpdateEvent::Installing { .. } => installing = Some(Instant::now()),
                UpdateEvent::StoppingBackend => stopping = Some(Instant::now()),
                UpdateEvent::StartingBackend { .. } => starting = Some(Instant::now()),
                _ => {}
            },
        );
        finished.store(true, Ordering::Relaxed);
        let watched = watcher
            .join()
            .map_err(|_| anyhow!("the downtime watcher panicked"))?;
        anyhow::Ok((report, watched))
    })?;
    let report = report?;
    let watched = watched?;
    if !report.backend_running {
        bail!("the update to {version} left no backend running");
    }
    let (Some(installing), Some(stopping), Some(starting)) = (installing, stopping, starting) else {
        bail!("the updater did not report installing, stopping and starting");
    };
    Ok(UpdateSample {
        reported_downtime: Duration::from_millis(report.downtime_ms),
        reported_time_to_healthy: Duration::from_millis(report.time_to_healthy_ms),
        watched_downtime: watched,
        stop: starting - stopping,
        unpack: stopping - installing,
    })
}

/// Waits for the old backend process to be gone, then for a backend to answer its health check with
/// `version` (its port read from the status file the supervisor keeps): the time between the two.
fn watch_switch(
    old_pid: u32,
    run_dir: &Path,
    version: &Version,
    poll: Duration,
    update_finished: &AtomicBool,
) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + GIVE_UP_AFTER;
    while is_process_alive(old_pid) {
        // The update stops the old backend before it returns; if it returned and the process lives, it failed.
        if Instant::now() > deadline || update_finished.load(Ordering::Relaxed) {
            bail!("the old backend (pid {old_pid}) was never stopped");
        }
        std::thread::sleep(poll);
    }
    let gone = Instant::now();
    let mut port = None;
    loop {
        if port.is_none() {
            let status = personal_ai_agent::supervisor::read_status(run_dir)?;
            if status.pid.is_some_and(|pid| pid != old_pid) && status.version == Some(version.to_string()) {
                port = status.port;
            }
        }
        if let Some(port) = port
            && health_answers(port, version)
        {
            return Ok(gone.elapsed());
        }
        if Instant::now() > deadline {
            bail!("the watcher never saw {version} answer its health check");
        }
        std::thread::sleep(poll);
    }
}

/// Whether `GET /health` on the loopback port answers 200 with `version` in the body (HTTP/1.0, std only).
fn health_answers(port: u16, version: &Version) -> bool {
    let ask = || -> std::io::Result<String> {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    ask().is_ok_and(|answer| {
        answer.starts_with("HTTP/1.1 200") && answer.contains(&format!("\"version\":\"{version}\""))
    })
}

struct Summary {
    median: Duration,
    p90: Duration,
    min: Duration,
    max: Duration,
}

impl Summary {
    /// Nearest-rank percentiles of a non-empty sample.
    fn of(samples: &[Duration]) -> Summary {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let rank = |p: f64| {
            let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted.get(index).copied().unwrap_or_default()
        };
        Summary {
            median: rank(0.5),
            p90: rank(0.9),
            min: sorted.first().copied().unwrap_or_default(),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
