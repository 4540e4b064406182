//! A small progress reporter for long stages: count, rate and ETA on stderr.
//! On a terminal it redraws one line; in logs (CI) it prints every 10%.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    stage: String,
    total: usize,
    done: usize,
    started: Instant,
    last_draw: Instant,
    last_decile: usize,
    terminal: bool,
}

impl Progress {
    pub fn new(stage: &str, total: usize) -> Self {
        let now = Instant::now();
        Self {
            stage: stage.to_string(),
            total,
            done: 0,
            started: now,
            last_draw: now - Duration::from_secs(1),
            last_decile: 0,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub fn advance(&mut self, n: usize) {
        self.done = (self.done + n).min(self.total);
        let decile = self.done * 10 / self.total.max(1);
        let redraw = if self.terminal {
            self.last_draw.elapsed() >= Duration::from_millis(100) || self.done == self.total
        } else {
            decile > self.last_decile
        };
        if redraw {
            self.last_draw = Instant::now();
            self.last_decile = decile;
            self.draw();
        }
    }

    fn draw(&self) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = self.done as f64 / elapsed.max(1e-9);
        let eta = (self.total - self.done) as f64 / rate.max(1e-9);
        let line = format!(
            "{}: {}/{} ({:.0}%) {:.1}/s, ETA {}",
            self.stage,
            self.done,
            self.total,
            100.0 * self.done as f64 / self.total.max(1) as f64,
            rate,
            format_duration(eta)
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }

    /// Ends the line and returns the elapsed time.
    pub fn finish(self) -> Duration {
        if self.terminal {
            eprintln!();
        }
        self.started.elapsed()
    }
}

pub fn format_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 60 { format!("{}m{:02}s", s / 60, s % 60) } else { format!("{s}s") }
}
