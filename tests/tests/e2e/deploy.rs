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
    for d in ["k8s", "grafana/provisioning/datasources", "grafana/provisioning/dashboards"] {
        std::fs::create_dir_all(copy.path().join(d)).unwrap();
    }
    for f in [
        "check",
        "Dockerfile",
        "docker-compose.yml",
        "prometheus.yml",
        "k8s/minio.yaml",
        "k8s/tikv.yaml",
        "k8s/silt-agent.yaml",
        "grafana/silt.json",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/silt.yml",
    ] {
        std::fs::copy(deploy.join(f), copy.path().join(f)).unwrap();
    }
    let compose = std::fs::read_to_string(copy.path().join("docker-compose.yml")).unwrap();
    std::fs::write(copy.path().join("docker-compose.yml"), compose.replacen("--cache-dir=", "--cache-dirs=", 1))
        .unwrap();
    let out = check(copy.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no flag --cache-dirs"), "{}", stderr(&out));

    // ... and an agent nobody scrapes or probes.
    std::fs::write(copy.path().join("docker-compose.yml"), &compose).unwrap();
    let prometheus = std::fs::read_to_string(copy.path().join("prometheus.yml")).unwrap();
    std::fs::write(copy.path().join("prometheus.yml"), prometheus.replace("\"agent-2:9464\", ", "")).unwrap();
    let k8s = std::fs::read_to_string(copy.path().join("k8s/silt-agent.yaml")).unwrap();
    std::fs::write(copy.path().join("k8s/silt-agent.yaml"), k8s.replace("path: /readyz", "path: /healthz")).unwrap();
    let out = check(copy.path());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("service agent-2: prometheus.yml does not scrape agent-2:9464"), "{err}");
    assert!(err.contains("no readinessProbe on /readyz"), "{err}");
}
