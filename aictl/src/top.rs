//! `aictl top`: the services' live usage, refreshed in place, as `systemd-cgtop` shows units.
//!
//! On a terminal it draws on the alternate screen with the cursor hidden and puts both back on
//! every way out (the end of `--iterations`, Ctrl-C, SIGTERM, SIGHUP, an error); elsewhere, or
//! with `--batch`, it prints one table per refresh, and only one unless `--iterations` says more.
//! `%CPU` is the CPU time a service used between two refreshes over the time between them, so
//! the first table has none.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};

use crate::live::{self, Row};

/// What the terminal is set to while `top` draws, and how it is put back.
const ENTER: &str = "\x1b[?1049h\x1b[?25l";
const LEAVE: &str = "\x1b[?25h\x1b[?1049l";

/// The alternate screen, left when dropped (so also on an error or a panic that unwinds).
struct Screen;

impl Screen {
    fn enter() -> Screen {
        out_raw!("{ENTER}");
        let _ = std::io::stdout().flush();
        Screen
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        out_raw!("{LEAVE}");
        let _ = std::io::stdout().flush();
    }
}

/// One service's CPU time when it was read.
type Seen = HashMap<String, (Instant, u64)>;

/// `aictl top`, on a runtime of its own (main dispatches it: `live` does not call this module,
/// which uses `live`).
pub(crate) fn run(delay: f64, iterations: Option<u64>, batch: bool) -> Result<ExitCode, String> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("cannot start: {e}"))?;
    runtime.block_on(top(delay, iterations, batch))
}

async fn top(delay: f64, iterations: Option<u64>, batch: bool) -> Result<ExitCode, String> {
    let conn = live::connect(live::READ_TIMEOUT).await?;
    let terminal = !batch && std::io::stdout().is_terminal();
    let iterations = iterations.or(if terminal { None } else { Some(1) });
    let mut stop = Signals::new()?;
    let screen = terminal.then(Screen::enter);
    let mut seen = Seen::new();
    let mut done = 0u64;
    loop {
        let (rows, problems) = live::fetch_rows(&conn, &[]).await?;
        let now = Instant::now();
        let size = terminal_size::terminal_size().map(|(w, h)| (usize::from(w.0), usize::from(h.0)));
        let lines = frame(&rows, &problems, &seen, now, size);
        seen = rows.iter().filter_map(|r| Some((r.name().to_owned(), (now, r.usage()?.cpu_usec?)))).collect();
        if screen.is_some() {
            // Home, each line over the last frame's, then clear what is left below.
            let mut text = String::from("\x1b[H");
            for line in &lines {
                text.push_str(line);
                text.push_str("\x1b[K\r\n");
            }
            text.push_str("\x1b[J");
            out_raw!("{text}");
        } else {
            if done > 0 {
                out!();
            }
            for line in &lines {
                out!("{line}");
            }
        }
        let _ = std::io::stdout().flush();
        done += 1;
        if iterations.is_some_and(|n| done >= n) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(delay)) => {}
            _ = stop.next() => break,
        }
    }
    drop(screen);
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C, SIGTERM and SIGHUP: each ends `top` the same way, with the terminal put back.
struct Signals(Vec<tokio::signal::unix::Signal>);

impl Signals {
    fn new() -> Result<Signals, String> {
        [SignalKind::interrupt(), SignalKind::terminate(), SignalKind::hangup()]
            .into_iter()
            .map(|kind| signal(kind).map_err(|e| format!("cannot handle signals: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Signals)
    }

    async fn next(&mut self) {
        let waits = self.0.iter_mut().map(|s| Box::pin(s.recv()));
        futures_util::future::select_all(waits).await;
    }
}

/// The lines of one refresh: a header, one line per service (busiest first), and the problems;
/// cut to the terminal's `size` (columns, lines) when there is one.
fn frame(rows: &[Row], problems: &[String], seen: &Seen, now: Instant, size: Option<(usize, usize)>) -> Vec<String> {
    let dash = || "-".to_owned();
    let mut table: Vec<(f64, u64, [String; 8])> = Vec::new();
    for r in rows {
        let u = r.usage();
        let cpu = u.and_then(|u| u.cpu_usec).and_then(|usec| {
            let (then, before) = seen.get(r.name())?;
            let wall = now.duration_since(*then).as_secs_f64();
            (wall > 0.0 && usec >= *before).then(|| (usec - before) as f64 / 1e6 / wall * 100.0)
        });
        table.push((
            cpu.unwrap_or(-1.0),
            u.and_then(|u| u.memory_current).unwrap_or(0),
            [
                aicontainers::diag::escape(r.name()).into_owned(),
                aicontainers::diag::escape(r.state()).into_owned(),
                u.and_then(|u| u.tasks).map_or_else(dash, |n| n.to_string()),
                cpu.map_or_else(dash, |c| format!("{c:.1}")),
                u.and_then(|u| u.memory_current).map_or_else(dash, crate::size::compact),
                u.and_then(|u| u.memory_peak).map_or_else(dash, crate::size::compact),
                u.and_then(|u| u.oom_kills).map_or_else(dash, |n| n.to_string()),
                u.and_then(|u| u.cpu_usec).map_or_else(dash, crate::size::cpu_time),
            ],
        ));
    }
    // Busiest first, then by memory, then by name (the sort is stable over the name order).
    table.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    let header = ["NAME", "STATE", "TASKS", "%CPU", "MEM", "PEAK", "OOM", "CPU-TIME"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for (_, _, cells) in &table {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String; 8]| {
        let mut text = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            // Names and states to the left, numbers to the right.
            if i < 2 {
                text.push_str(&format!("{c:<w$}  "));
            } else {
                text.push_str(&format!("{c:>w$}  "));
            }
        }
        text.trim_end().to_owned()
    };
    let mut lines = vec![line(&header)];
    lines.extend(table.iter().map(|(_, _, cells)| line(cells)));
    for r in rows {
        for p in r.usage().iter().flat_map(|u| &u.problems) {
            lines.push(format!("{}: {}", aicontainers::diag::escape(r.name()), aicontainers::diag::escape(p)));
        }
    }
    for p in problems {
        lines.push(format!("aicontainersd cannot show everything: {}", aicontainers::diag::escape(p)));
    }
    if let Some((columns, height)) = size {
        let shown = height.max(2) - 1;
        if lines.len() > shown {
            let hidden = lines.len() - (shown - 1);
            lines.truncate(shown - 1);
            lines.push(format!("... {hidden} more lines (a taller terminal, or aictl status)"));
        }
        for l in &mut lines {
            if let Some((cut, _)) = l.char_indices().nth(columns.max(1)) {
                l.truncate(cut);
            }
        }
    }
    lines
}
