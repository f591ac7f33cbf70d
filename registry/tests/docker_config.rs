//! Credentials from the Docker config in its default location (`$DOCKER_CONFIG/config.json`)
//! through a real credential helper program (`credHelpers` and `credsStore`), against a real
//! registry. The environment cannot be changed inside a test process, so the parent test runs
//! this binary again as a child with `DOCKER_CONFIG` and `PATH` set.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use barbacane_registry::{Credentials, DockerConfig, NoProgress, Options, PluginRef, Registry};
use common::{TestRegistry, filter_wasm};

/// Run only as the child of `credential_helpers_are_used`.
#[tokio::test]
#[ignore = "run by credential_helpers_are_used with a prepared environment"]
async fn child_pull_with_default_docker_config() {
    let Ok(source) = std::env::var("BB_TEST_SOURCE") else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(Options {
        docker_config: DockerConfig::Default,
        cache: Some(barbacane_registry::Cache::new(cache.path())),
        ..Options::default()
    });
    let r = PluginRef::parse(&source).unwrap();
    assert_eq!(
        client.credentials_for(r.registry()).unwrap(),
        Credentials::basic("testuser", "testpass")
    );
    let pulled = client.pull(&r, &NoProgress).await.unwrap();
    println!("PULLED {}", pulled.layer_digest);
}

#[tokio::test]
async fn credential_helpers_are_used() {
    let reg = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let r = PluginRef::parse(&reg.oci("filters/headers:1")).unwrap();
    let pushed = reg
        .client(cache.path())
        .push(&filter_wasm(), &r, None, &NoProgress)
        .await
        .unwrap();

    let bin = tempfile::tempdir().unwrap();
    let helper = bin.path().join("docker-credential-bbtest");
    std::fs::write(
        &helper,
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n\
         printf '{\"ServerURL\":\"%s\",\"Username\":\"testuser\",\"Secret\":\"testpass\"}' \"$server\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    for config in [
        format!(r#"{{"credHelpers":{{"{}":"bbtest"}}}}"#, reg.host()),
        r#"{"credsStore":"bbtest"}"#.to_string(),
    ] {
        let docker = tempfile::tempdir().unwrap();
        std::fs::write(docker.path().join("config.json"), &config).unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_pull_with_default_docker_config",
                "--ignored",
                "--nocapture",
            ])
            .env("BB_TEST_SOURCE", reg.oci("filters/headers:1"))
            .env("DOCKER_CONFIG", docker.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("PULLED {}", pushed.layer_digest)),
            "{config}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
