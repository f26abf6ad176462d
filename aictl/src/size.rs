//! Sizes and counts as people read them, for every command that prints them.

/// `512 B`, `1.5 KiB`, `3.2 GiB`: binary units, one decimal.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1 file`, `3 files`.
pub(crate) fn files(n: usize) -> String {
    if n == 1 {
        "1 file".to_owned()
    } else {
        format!("{n} files")
    }
}

/// `512B`, `1.5K`, `3.2G`: one word, for table cells (as `systemd-cgtop` shows memory).
pub(crate) fn compact(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// CPU time as `0.25s`, `59.0s`, `12m03s`, `3h07m`: one word.
pub(crate) fn cpu_time(usec: u64) -> String {
    let secs = usec / 1_000_000;
    if secs < 60 {
        format!("{:.2}s", usec as f64 / 1e6)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_sizes_and_times() {
        assert_eq!(compact(0), "0B");
        assert_eq!(compact(1023), "1023B");
        assert_eq!(compact(1536), "1.5K");
        assert_eq!(compact(64 << 20), "64.0M");
        assert_eq!(compact(u64::MAX - 1), "16384.0P");
        assert_eq!(cpu_time(250_000), "0.25s");
        assert_eq!(cpu_time(723_000_000), "12m03s");
        assert_eq!(cpu_time(11_220_000_000), "3h07m");
        assert_eq!(cpu_time(u64::MAX - 1), "5124095576h01m");
    }
}
