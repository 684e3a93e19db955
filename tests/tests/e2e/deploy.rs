//! deploy/ parses, and uses only `silt agent` flags that exist.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

fn check(deploy_dir: &Path) -> std::process::Output {
    Command::new("python3").arg(deploy_dir.join("check")).arg(silt_bin()).output().unwrap()
}

#[test]
fn deploy_files_parse_and_use_real_agent_flags() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy");
    let out = check(&deploy);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));

    // The check catches a flag that does not exist.
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir(copy.path().join("k8s")).unwrap();
    for f in ["check", "Dockerfile", "docker-compose.yml", "k8s/minio.yaml", "k8s/tikv.yaml", "k8s/silt-agent.yaml"] {
        std::fs::copy(deploy.join(f), copy.path().join(f)).unwrap();
    }
    let compose = std::fs::read_to_string(copy.path().join("docker-compose.yml")).unwrap();
    std::fs::write(copy.path().join("docker-compose.yml"), compose.replacen("--cache-dir=", "--cache-dirs=", 1))
        .unwrap();
    let out = check(copy.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no flag --cache-dirs"), "{}", stderr(&out));
}
