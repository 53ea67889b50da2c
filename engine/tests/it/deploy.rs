//! The deployment files: the image's Containerfile, the compose stack and the Kubernetes
//! objects say what the engine needs (probes on /healthz and /readyz, a non-root user,
//! data in a volume, shared secrets) and their engine settings load as the engine would
//! load them. With `SPEEDY_KUBERNETES_VALIDATE` (the `kubernetes-validate` tool from
//! PyPI, which ships the schemas) the objects are also checked against Kubernetes'
//! schemas, offline; `SPEEDY_REQUIRE_KUBERNETES_VALIDATE` makes that tool required.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `map[key]`, or what its `<<` merge key gives (the YAML parser does not apply merges).
fn field<'a>(map: &'a Yaml, key: &str) -> &'a Yaml {
    match &map[key] {
        Yaml::BadValue => &map["<<"][key],
        found => found,
    }
}

fn yaml(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Loads `toml` as the engine's settings file, with `overrides` as its environment.
fn load(toml: &str, overrides: &engine::Overrides) -> engine::Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("speedy.toml");
    std::fs::write(&path, toml).unwrap();
    engine::Config::load(Some(&path), overrides).unwrap_or_else(|e| panic!("{toml}\n{e}"))
}

#[test]
fn the_image_runs_as_a_user_with_its_data_in_a_volume() {
    let file = read("Containerfile");
    let lines: Vec<&str> = file.lines().map(str::trim).collect();
    assert!(lines.contains(&"ARG BASE=docker.io/library/debian:bookworm-slim"));
    assert!(lines.contains(&"FROM ${BASE}"));
    assert!(lines.contains(&"USER 10001:10001"));
    assert!(lines.contains(&"VOLUME /var/lib/speedy"));
    assert!(lines.contains(&"STOPSIGNAL SIGTERM"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("COPY target/release/engine "))
    );
    // The build context is the binary alone, not the target directory.
    for ignore in [".containerignore", ".dockerignore"] {
        assert_eq!(
            read(ignore)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            ["*", "!target/release/engine"]
        );
    }
}

#[test]
fn the_compose_stack_runs_three_nodes_scraped_by_prometheus() {
    let compose = &yaml("deploy/compose/compose.yaml")[0];
    let services = &compose["services"];
    for needed in ["postgres", "nats", "prometheus", "grafana"] {
        assert!(!services[needed].is_badvalue(), "no {needed} service");
    }
    let settings = read("deploy/compose/speedy.toml");
    let mut ids = Vec::new();
    for n in 1..=3 {
        let node = &services[format!("node-{n}").as_str()];
        assert_eq!(
            field(node, "image").as_str(),
            Some("${SPEEDY_IMAGE:-speedy-cheers}")
        );
        assert_eq!(field(node, "stop_signal").as_str(), Some("SIGTERM"));
        let check = field(node, "healthcheck")["test"]
            .as_vec()
            .unwrap()
            .iter()
            .filter_map(Yaml::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(check.contains("GET /readyz"), "{check}");
        let env = &node["environment"];
        let id = env["SPEEDY_NODE_ID"].as_str().unwrap().to_string();
        let config = load(
            &settings,
            &engine::Overrides {
                database: env["SPEEDY_DATABASE_URL"].as_str().map(String::from),
                cluster: env["SPEEDY_CLUSTER"].as_str().map(String::from),
                node_id: Some(id.clone()),
                ..Default::default()
            },
        );
        let cluster = config.cluster.expect("cluster mode");
        assert_eq!(cluster.nats, "nats://nats:4222");
        assert!(config.database.unwrap().starts_with("postgres://"));
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "node ids must differ: {ids:?}");
    let prometheus = &yaml("deploy/compose/prometheus.yml")[0];
    let targets: Vec<&str> = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(targets, ["node-1:8080", "node-2:8080", "node-3:8080"]);
    // Grafana is provisioned with the project's dashboard.
    let mounts: Vec<&str> = services["grafana"]["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with("../grafana/speedy-cheers.json:"))
    );
    assert!(repo().join("deploy/grafana/speedy-cheers.json").exists());
}

#[test]
fn the_kubernetes_objects_probe_drain_and_share_their_settings() {
    let docs = yaml("deploy/kubernetes/speedy-cheers.yaml");
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let set = kind("StatefulSet");
    assert_eq!(set["spec"]["replicas"].as_i64(), Some(3));
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let engine = &pod["containers"][0];
    assert_eq!(
        engine["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        engine["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert!(!engine["resources"]["requests"]["cpu"].is_badvalue());
    assert_eq!(
        engine["envFrom"][0]["secretRef"]["name"].as_str(),
        kind("Secret")["metadata"]["name"].as_str()
    );
    let labels = &set["spec"]["selector"]["matchLabels"];
    assert_eq!(
        &kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        labels
    );
    assert_eq!(&kind("Service")["spec"]["selector"], labels);
    // The ConfigMap's settings and the Secret's environment make a valid cluster node.
    let toml = kind("ConfigMap")["data"]["speedy.toml"].as_str().unwrap();
    let secret = &kind("Secret")["stringData"];
    let value = |k: &str| secret[k].as_str().map(String::from);
    let config = load(
        toml,
        &engine::Overrides {
            database: value("SPEEDY_DATABASE_URL"),
            cluster: value("SPEEDY_CLUSTER"),
            admin_key: value("SPEEDY_ADMIN_KEY"),
            token_secret: value("SPEEDY_TOKEN_SECRET"),
            feedback_api_key: value("SPEEDY_FEEDBACK_API_KEY"),
            node_id: Some("speedy-cheers-0".into()),
            ..Default::default()
        },
    );
    assert!(config.cluster.is_some() && config.database.is_some());
    assert!(config.feedback_api_key.is_some());
    // Against Kubernetes' own schemas, offline.
    match std::env::var_os("SPEEDY_KUBERNETES_VALIDATE") {
        Some(tool) => {
            let out = std::process::Command::new(tool)
                .arg("--strict")
                .arg(repo().join("deploy/kubernetes/speedy-cheers.yaml"))
                .output()
                .expect("kubernetes-validate runs");
            assert!(
                out.status.success(),
                "kubernetes-validate refused the objects:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => {
            storage::skips::skip(
                "the Kubernetes schema check",
                "kubernetes-validate (SPEEDY_KUBERNETES_VALIDATE)",
                "SPEEDY_REQUIRE_KUBERNETES_VALIDATE",
            );
        }
    }
}
