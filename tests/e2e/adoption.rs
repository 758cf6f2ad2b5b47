//! A team adopting soakwatch on its own service: configs that say only what
//! the service has, paths that mean the config's folder, a preflight that
//! keeps a monitoring typo out of the soak's record.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

/// `soakwatch` run from `cwd` (not the repo root).
async fn run_in(cwd: &std::path::Path, args: &[&str]) -> Run {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("soakwatch finished within 60 s")
    .expect("soakwatch ran");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_paths_in_the_config_mean_its_folder_from_any_cwd() {
    let mut r = Replica::healthy(3).await;
    let (log, env) = (r.files.log_file.clone(), r.files.env_file.clone());
    r.edit_config(|t| {
        t.replace(&toml_path(&log), "\"normalize-service.log\"")
            .replace(&toml_path(&env), "\"./sub/../normalize-service.env\"")
    });
    let text = read(&r.config);
    assert!(text.contains("\"normalize-service.log\""), "{text}");
    assert!(!text.contains(&log.display().to_string()), "{text}");
    r.publish(2).await;
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let config = r.config.display().to_string();
    let run = run_in(
        elsewhere.path(),
        &[
            "check", "--config", &config, "--format", "json", "--window", "0s",
        ],
    )
    .await;
    // The log and env probes found their files next to the config, not in the cwd.
    let j = run.json();
    for id in ["fallback", "consumer_config"] {
        let c = j["criteria"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id))
            .unwrap_or_else(|| panic!("{id} in {}", run.stdout));
        assert_ne!(c["status"], "unknown", "{id}: {c}");
    }
    // A missing relative file is reported with the absolute path it was looked for at.
    r.edit_config(|t| t.replace("\"normalize-service.log\"", "\"logs/missing.log\""));
    let run = run_in(
        elsewhere.path(),
        &[
            "check", "--config", &config, "--format", "text", "--window", "0s",
        ],
    )
    .await;
    let want = r.dir.path().join("logs/missing.log").display().to_string();
    assert!(
        run.stdout.contains(&want) || run.stderr.contains(&want),
        "{want} not named:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    // `validate` names the config file by its absolute path.
    r.edit_config(|t| t.replace("[soak]", "[soak]\nbogus_key = 1"));
    let rel = run_in(r.dir.path(), &["validate", "--config", "checks.toml"]).await;
    let abs = format!("{}:", r.config.display());
    assert!(
        rel.stdout.contains(&abs) || rel.stderr.contains(&abs),
        "{}{}",
        rel.stdout,
        rel.stderr
    );
}
