//! The agent's numbers, for tests/bench/agent (ignored by plain `cargo test`: it takes a minute
//! and reports, it does not judge). Same rig as the other tests: a real dbus-daemon with the
//! system bus's limits and stand-ins for systemd and polkit, here with 1,000 services
//! (`AGENT_BENCH_SERVICES`).
//!
//!   cargo test --release -p aicontainers-agent --test bench -- --ignored --nocapture

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use aicontainers_agent::names::{service_path, BUS_NAME, SERVICE_INTERFACE};
use support::*;
use zbus::fdo::PropertiesProxy;
use zbus::names::InterfaceName;

const ROUNDS: usize = 20;
/// A valid service without GPUs.
const PLAIN: &str = "[service]\nimage = \"localhost/web:1\"\nrun-as = \"nobody\"\n";

fn services() -> usize {
    std::env::var("AGENT_BENCH_SERVICES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

/// (VmRSS KiB, VmHWM KiB, context switches of all threads, threads) of `pid`.
fn sample(pid: u32) -> (u64, u64, u64, usize) {
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mut switches = 0;
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(text) = std::fs::read_to_string(task.unwrap().path().join("status")) else { continue };
        switches += field(&text, "voluntary_ctxt_switches:") + field(&text, "nonvoluntary_ctxt_switches:");
        threads += 1;
    }
    (field(&status, "VmRSS:"), field(&status, "VmHWM:"), switches, threads)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

async fn idle_wakeups(pid: u32, window: Duration) -> (u64, u64) {
    let (_, _, before, _) = sample(pid);
    tokio::time::sleep(window).await;
    let (rss, _, after, _) = sample(pid);
    (after - before, rss)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run by tests/bench/agent"]
async fn agent_numbers() {
    assert!(nix::unistd::geteuid().is_root(), "the benchmark must run as root (it owns names on a private bus)");
    let window =
        Duration::from_secs(std::env::var("AGENT_BENCH_IDLE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30));
    let settle = Duration::from_secs(12); // tokio lets an idle blocking-pool thread go after 10 s

    let services = services();
    for watchdog in [None, Some(Duration::from_secs(4))] {
        let mut rig = Rig::without_agent(Polkit::Absent).await;
        if watchdog.is_some() {
            for i in 0..services {
                write_service(&rig.root, &format!("svc{i:04}"), PLAIN);
            }
        }
        let t0 = Instant::now();
        rig.start_agent_with(watchdog).await;
        let startup = t0.elapsed();
        let pid = rig.agent_pid();
        let (rss_ready, _, _, threads) = sample(pid);
        println!();
        match watchdog {
            None => println!("== agent without a watchdog, {services} services (+ web, broken)"),
            Some(w) => {
                println!("== agent with WATCHDOG_USEC={} (keep-alive every {} s)", w.as_micros(), w.as_secs() / 2)
            }
        }
        println!(
            "startup to READY=1 with {} services: {:.1} ms; threads: {threads}; RSS when ready: {:.1} MiB",
            rig.services_written(),
            startup.as_secs_f64() * 1e3,
            rss_ready as f64 / 1024.0
        );
        if watchdog.is_none() {
            // Registration after a daemon-reload: from systemd's Reloading(false) to the STATUS
            // line that follows the rescan (every service on the bus with its unit's state).
            for i in 0..services {
                write_service(&rig.root, &format!("svc{i:04}"), PLAIN);
            }
            let emitter = zbus::object_server::SignalEmitter::new(&rig.systemd, SYSTEMD_PATH).unwrap();
            let t = Instant::now();
            FakeSystemd::reloading(&emitter, false).await.unwrap();
            rig.wait_notify(&format!("STATUS=Watching {} services", services + 2)).await;
            let took = t.elapsed();
            let (rss, _, _, _) = sample(pid);
            println!(
                "daemon-reload with {services} new services: all {} on the bus in {:.1} ms ({} ListUnitsByNames calls); RSS then {:.1} MiB",
                services + 2,
                took.as_secs_f64() * 1e3,
                rig.reads.lock().unwrap().len() - 1,
                rss as f64 / 1024.0
            );
        }

        if watchdog.is_none() {
            let mut single = Vec::new();
            for _ in 0..ROUNDS {
                for i in 0..services {
                    let p = PropertiesProxy::builder(&rig.client)
                        .destination(BUS_NAME)
                        .unwrap()
                        .path(service_path(&format!("svc{i:04}")))
                        .unwrap()
                        .build()
                        .await
                        .unwrap();
                    let t = Instant::now();
                    let props = p.get_all(InterfaceName::try_from(SERVICE_INTERFACE).unwrap()).await.unwrap();
                    single.push(t.elapsed());
                    assert_eq!(props.len(), 12);
                }
            }
            single.sort();
            let om = rig.object_manager().await;
            let mut all = Vec::new();
            for _ in 0..ROUNDS {
                let t = Instant::now();
                let objects = om.get_managed_objects().await.unwrap();
                all.push(t.elapsed());
                assert!(objects.len() > services);
            }
            all.sort();
            let total: Duration = single.iter().sum::<Duration>() / ROUNDS as u32;
            println!(
                "GetAll(org.aicontainers.Service1), one object at a time: p50 {:.0} us, p99 {:.0} us per call; all {services} objects in {:.1} ms",
                percentile(&single, 0.5),
                percentile(&single, 0.99),
                total.as_secs_f64() * 1e3
            );
            println!(
                "GetManagedObjects (all {} objects with properties in one call): p50 {:.1} ms, p99 {:.1} ms",
                services + 2,
                percentile(&all, 0.5) / 1e3,
                percentile(&all, 0.99) / 1e3
            );
            let aictl = aictl().display().to_string();
            let mut runs = Vec::new();
            for _ in 0..ROUNDS / 2 {
                let t = Instant::now();
                let out = rig.as_root(&aictl, &["status"]).await;
                runs.push(t.elapsed());
                assert!(out.status.success(), "{}", said(&out));
                assert!(String::from_utf8_lossy(&out.stdout).lines().count() > services);
            }
            runs.sort();
            println!(
                "aictl status ({} services, the whole command: start, connect, GetManagedObjects, table): p50 {:.1} ms, p99 {:.1} ms",
                services + 2,
                percentile(&runs, 0.5) / 1e3,
                percentile(&runs, 0.99) / 1e3
            );
        }
        tokio::time::sleep(settle).await;
        let (wakeups, rss) = idle_wakeups(pid, window).await;
        let (_, hwm, _, threads) = sample(pid);
        println!(
            "idle for {} s: {wakeups} context switches (all threads: {threads}); RSS {:.1} MiB (peak {:.1} MiB)",
            window.as_secs(),
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
}
