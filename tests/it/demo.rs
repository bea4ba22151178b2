//! `personal-ai-agent demo`: the offline story in the terminal, end to end with real processes (the
//! launcher's own executable is the demo releases' backend), in a home of its own.

use crate::cli_update::{json_of, pai};
use crate::support::temp_home;

#[test]
fn the_terminal_demo_installs_updates_rolls_back_by_itself_and_on_demand_without_touching_the_real_install() {
    let home = temp_home();
    let out = pai(home.path(), None, &["demo", "--terminal", "--json"]);
    let doc = json_of(&out);
    let steps: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["install", "check", "update", "health_gated_rollback", "rollback"],
        "{doc}"
    );
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps[0]["report"]["installed_version"], "1.0.0");
    assert_eq!(steps[0]["report"]["signed"], true, "signed by the demo's own key");
    assert_eq!(steps[1]["report"]["latest"]["version"], "1.1.0");
    assert_eq!(steps[2]["report"]["installed_version"], "1.1.0");
    let failure = steps[3]["message"].as_str().unwrap();
    assert!(failure.contains("1.2.0"), "{failure}");
    assert_eq!(steps[4]["report"]["to"], "1.0.0");

    // The demo's home: 1.0.0 current, 1.2.0 remembered as failed, the key pinned.
    let demo_home = home.path().join("demo").join("home");
    let status = json_of(&pai(&demo_home, None, &["update", "status", "--json"]));
    assert_eq!(status["current_version"], "1.0.0", "{status}");
    assert_eq!(status["public_key_pinned"], true);
    assert!(
        status["failed_versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "1.2.0"),
        "{status}"
    );
    // No backend is left running by the story.
    let backend = json_of(&pai(&demo_home, None, &["backend", "status", "--json"]));
    assert_eq!(backend["state"], "stopped", "{backend}");

    // The real home has nothing installed and no settings of the demo's.
    let real = json_of(&pai(home.path(), None, &["update", "status", "--json"]));
    assert!(real["current_version"].is_null(), "{real}");
    assert!(real["source"].is_null(), "{real}");

    // Run again: the prepared demo is reused; --reset starts over from nothing.
    let again = json_of(&pai(
        home.path(),
        None,
        &["demo", "--terminal", "--json", "--reset"],
    ));
    assert_eq!(again["steps"][0]["step"], "install", "{again}");
}
