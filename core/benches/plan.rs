//! Our share of the generator's work: parse + check + plan + render of 1,000 service files,
//! without Quadlet (which tests/bench/generator measures beside it in the VM).
//!
//!     cargo bench -p aicontainers --bench plan
//!
//! Prints the median and the spread of 30 runs; it asserts nothing (targets are read, not tested).

use std::fs;
use std::time::Instant;

use aicontainers::account::FixedAccounts;
use aicontainers::generate;
use aicontainers::render::PodmanVersion;

const SERVICES: usize = 1000;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let template =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/model-server.toml")).expect("example");
    for i in 0..SERVICES {
        let text = template.replace("8081", &(10000 + i).to_string());
        fs::write(dir.path().join(format!("svc-{i:04}.toml")), text).expect("write");
    }
    let accounts = FixedAccounts::parse(&["aimodels:990".to_owned()]).expect("accounts");
    let mut times = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let plan =
            generate::plan(&[dir.path()], &accounts, PodmanVersion(5, 4, 0), &aicontainers::host::HostGpus::from_env());
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(plan.services.len(), SERVICES);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "plan: {SERVICES} services (examples/model-server.toml each): median {:.2} ms, min {:.2} ms, max {:.2} ms over {} runs",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
}
