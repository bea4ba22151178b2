//! `personal-ai-agent demo`: the whole product, offline, from a local feed of three signed releases
//! (`crate::demo`). With a display it opens the window on the demo's own home (the releases appear one
//! by one as the one before is installed). Without one (or with `--terminal`, or `--json`) it tells the
//! same story here, step by step, through the same service operations every face uses:
//! install 1.0.0 → 1.1.0 offered with its release notes → update → 1.2.0 fails its health check and is
//! rolled back by itself → roll back to 1.0.0 on demand.

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::Ctx;
use super::update::ProgressView;
use crate::app::{Op, Service, StartOptions};
use crate::demo::Demo;
use crate::download::CancelToken;

#[derive(Debug, Default, clap::Args)]
pub struct DemoArgs {
    /// Tell the story in the terminal even when a window could open.
    #[arg(long)]
    pub terminal: bool,
    /// Start over: remove the demo's folder (its key, releases and installs) first.
    #[arg(long)]
    pub reset: bool,
}

pub fn run(ctx: &Ctx, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let demo = Demo::under(&ctx.paths);
    let terminal = args.terminal || ctx.json || !crate::ui::display_available();
    // The terminal story always starts from the beginning: a demo played before is made anew.
    if args.reset || (terminal && demo.played()) {
        demo.remove().context("starting the demo over")?;
    }
    demo.prepare(&crate::demo::this_launcher()?)
        .context("preparing the offline demo")?;
    if !terminal {
        demo.publish_as_installed()
            .context("cannot start the demo's publisher thread")?;
        crate::ui::run_window(demo.paths.clone())?;
        return Ok(ExitCode::SUCCESS);
    }
    story(ctx, &demo)
}

/// Says `text` unless `--json` or `--quiet`.
fn say(ctx: &Ctx, text: &str) {
    if !ctx.json && !ctx.quiet {
        eprintln!("{text}");
    }
}

fn story(ctx: &Ctx, demo: &Demo) -> anyhow::Result<ExitCode> {
    // The demo's home is an install like any other: this process owns it while the story runs.
    let owner = crate::owner::Owner::take_as(&demo.paths, "demo")?;
    let service = Service::new(demo.paths.clone());
    let cancel = CancelToken::new();
    {
        let cancel = cancel.clone();
        let _ = ctrlc::set_handler(move || cancel.cancel());
    }
    let mut steps: Vec<Value> = Vec::new();
    let outcome = tell(ctx, demo, &service, &cancel, &mut steps);
    let _ = service.supervisor().stop();
    drop(owner);
    outcome?;
    ctx.emit(&json!({ "demo_home": demo.paths.data_dir, "feed": demo.feed_dir(), "steps": steps }), || {
        format!(
            "\nThat was the whole product, offline. The demo lives in {} (never mixed with a real install).\nOpen it in the window: personal-ai-agent demo   ·   start over: personal-ai-agent demo --reset",
            demo.root.display()
        )
    });
    Ok(ExitCode::SUCCESS)
}

fn tell(
    ctx: &Ctx,
    demo: &Demo,
    service: &Service,
    cancel: &CancelToken,
    steps: &mut Vec<Value>,
) -> anyhow::Result<()> {
    let run = |op: Op| -> Result<Value, crate::app::AppError> {
        let mut view = ProgressView::new(ctx);
        let result = service.run_here(|s| s.start(op), cancel, &mut |p| view.on_progress(p));
        view.finish();
        result
    };
    let installed = || {
        crate::updater::current_version(&demo.paths)
            .ok()
            .flatten()
            .map(|v| v.to_string())
    };

    if installed().is_none() {
        say(
            ctx,
            "1. First install: the feed has one release, 1.0.0, signed by the demo's key.",
        );
        let report = run(Op::Install {
            version: None,
            full: false,
            allow_downgrade: false,
        })?;
        steps.push(json!({ "step": "install", "report": report }));
        say(ctx, &format!("   Installed {}.", installed().unwrap_or_default()));
    }
    if service.supervisor().status().state != "running" {
        let started = run(Op::BackendStart(StartOptions::default()))?;
        say(
            ctx,
            &format!(
                "   The agent runs on http://127.0.0.1:{}.",
                started["backend"]["port"]
            ),
        );
    }

    say(ctx, "\n2. The project publishes 1.1.0 with release notes.");
    demo.publish_next()?;
    let check = run(Op::Check {
        channel: None,
        platform: None,
    })?;
    steps.push(json!({ "step": "check", "report": check }));
    say(
        ctx,
        &format!(
            "   Update available: {} → {}",
            installed().unwrap_or_default(),
            check["latest"]["version"].as_str().unwrap_or("?")
        ),
    );
    let changelog = service.changelog(crate::app::ChangelogQuery::default())?;
    for entry in &changelog.releases {
        say(ctx, &format!("\n   What's new in {}:\n", entry.version));
        for line in entry.notes.lines() {
            say(ctx, &format!("     {line}"));
        }
    }
    let report = run(Op::Install {
        version: None,
        full: false,
        allow_downgrade: false,
    })?;
    steps.push(json!({ "step": "update", "report": report }));
    say(
        ctx,
        &format!(
            "\n   Updated to {}; the backend restarted and proved healthy.",
            installed().unwrap_or_default()
        ),
    );

    say(ctx, "\n3. The project publishes 1.2.0, whose backend is broken.");
    demo.publish_next()?;
    match run(Op::Install {
        version: None,
        full: false,
        allow_downgrade: false,
    }) {
        Ok(report) => anyhow::bail!("the demo's broken release installed: {report}"),
        Err(e) => {
            steps.push(json!({ "step": "health_gated_rollback", "message": e.to_string() }));
            say(
                ctx,
                &format!(
                    "   1.2.0 did not pass its health check, so the launcher put {} back by itself; 1.2.0 is not offered again.",
                    installed().unwrap_or_default()
                ),
            );
        }
    }
    let again = run(Op::Check {
        channel: None,
        platform: None,
    })?;
    say(
        ctx,
        if again["update_available"] == true {
            "   (a check still offers an update)"
        } else {
            "   A new check: up to date."
        },
    );

    say(ctx, "\n4. Rolling back to 1.0.0 on demand.");
    let report = run(Op::Rollback {
        to: Some("1.0.0".parse().expect("a version")),
    })?;
    steps.push(json!({ "step": "rollback", "report": report }));
    say(
        ctx,
        &format!("   {} runs again.", installed().unwrap_or_default()),
    );
    Ok(())
}
