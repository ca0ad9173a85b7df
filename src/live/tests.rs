use super::render::tests::{header, pair, parse_plain};
use super::*;
use std::sync::{Arc, Mutex};

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

/// Fails every write.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(libc::EPIPE))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn view(mode: Mode, size: (usize, usize)) -> (LiveView, Buf) {
    let buf = Buf::default();
    let v = LiveView::with_writer(header(Vantage::Cpu), mode, Box::new(buf.clone()), size);
    (v, buf)
}

/// Snapshots at 0, 1, 2 s of one stream, 100 packets per second.
fn steady(n: u64) -> Vec<Snapshot> {
    (0..n)
        .map(|i| Snapshot {
            elapsed: Duration::from_secs(i),
            streams: vec![
                StreamCount {
                    id: 0,
                    label: "cpu0".into(),
                    packets: i * 100,
                    bytes: i * 10_000,
                    drops: 0,
                    repeated: None,
                },
                StreamCount {
                    id: 1,
                    label: "cpu1".into(),
                    packets: i * 50,
                    bytes: i * 5_000,
                    drops: i,
                    repeated: None,
                },
            ],
            cpus: None,
            repeats: None,
            kernel_drops: None,
            flows: None,
        })
        .collect()
}

#[test]
fn modes() {
    assert_eq!(Mode::choose(true, false), Mode::Table);
    assert_eq!(Mode::choose(true, true), Mode::Table);
    assert_eq!(Mode::choose(false, true), Mode::Json);
    assert_eq!(Mode::choose(false, false), Mode::Plain);
}

#[test]
fn plain_lines_add_up_to_the_final_counts() {
    let (mut v, buf) = view(Mode::Plain, (80, 24));
    let snaps = steady(4);
    for s in &snaps[..3] {
        v.update(s.clone()).unwrap();
    }
    // The last, partial interval comes with finish.
    let mut last = snaps[3].clone();
    last.elapsed = Duration::from_millis(2_300);
    last.streams[0].packets = 207;
    v.finish(Some(last)).unwrap();
    let out = buf.take();
    let lines: Vec<&str> = out.lines().collect();
    // No line for the first snapshot; two streams for three intervals.
    assert_eq!(lines.len(), 6, "{out}");
    let mut sum = [0u64; 2];
    let mut last_packets = [0u64; 2];
    for l in &lines {
        let f: std::collections::HashMap<String, String> = parse_plain(l).into_iter().collect();
        let i = match f["stream"].as_str() {
            "cpu0" => 0,
            "cpu1" => 1,
            s => panic!("{s}"),
        };
        sum[i] += f["interval_packets"].parse::<u64>().unwrap();
        last_packets[i] = f["packets"].parse().unwrap();
    }
    assert_eq!(sum, [207, 150]);
    assert_eq!(last_packets, [207, 150]);
    assert!(lines[5].starts_with("time=2.300 interval=0.300 stream=cpu1 pps=166.7 "));
}

#[test]
fn json_lines_one_per_interval() {
    let (mut v, buf) = view(Mode::Json, (80, 24));
    for s in steady(3) {
        v.update(s).unwrap();
    }
    v.finish(None).unwrap();
    let out = buf.take();
    let objs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 2);
    assert_eq!(objs[1]["time"], 2.0);
    assert_eq!(objs[1]["streams"][0]["pps"], 100.0);
    assert_eq!(objs[1]["streams"][1]["drops_ps"], 1.0);
    assert_eq!(objs[1]["total"]["packets"], 300);
}

#[test]
fn table_enters_draws_and_leaves() {
    let (mut v, buf) = view(Mode::Table, (60, 10));
    let (a, b) = pair();
    v.update(a.clone()).unwrap();
    let first = buf.take();
    assert!(first.starts_with(term::ENTER), "{first:?}");
    let body = &first[term::ENTER.len()..];
    let lines = crate::live::render::render_table(&header(Vantage::Cpu), None, &a, 60, 10);
    assert_eq!(body, term::frame(&lines, 60, 10));
    v.update(b.clone()).unwrap();
    let second = buf.take();
    // A frame, no second ENTER.
    assert!(second.starts_with("\x1b[H") && !second.contains("\x1b[?1049h"));
    assert!(second.contains("cpu1   !"));
    // A resize draws the same interval at the new size.
    v.set_size((40, 6)).unwrap();
    let third = buf.take();
    let lines = crate::live::render::render_table(&header(Vantage::Cpu), Some(&a), &b, 40, 6);
    assert_eq!(third, term::frame(&lines, 40, 6));
    v.finish(None).unwrap();
    assert_eq!(buf.take(), term::LEAVE);
}

#[test]
fn dropping_the_view_leaves_the_screen() {
    let (mut v, buf) = view(Mode::Table, (80, 24));
    v.update(pair().0).unwrap();
    buf.take();
    drop(v);
    assert_eq!(buf.take(), term::LEAVE);
    // Never entered: nothing to leave.
    let (v, buf) = view(Mode::Table, (80, 24));
    drop(v);
    assert_eq!(buf.take(), "");
}

#[test]
fn suspend_and_resume() {
    let (mut v, buf) = view(Mode::Table, (80, 24));
    let (a, b) = pair();
    v.update(a).unwrap();
    buf.take();
    v.suspend();
    assert_eq!(buf.take(), term::LEAVE);
    // Counters keep coming while stopped; nothing is drawn.
    v.update(b).unwrap();
    assert_eq!(buf.take(), "");
    v.resume().unwrap();
    let back = buf.take();
    assert!(
        back.starts_with(term::ENTER) && back.contains("cpu1   !"),
        "{back:?}"
    );
}

#[test]
fn a_broken_stderr_turns_the_view_off() {
    for mode in [Mode::Table, Mode::Plain, Mode::Json] {
        let mut v = LiveView::with_writer(header(Vantage::Cpu), mode, Box::new(Broken), (80, 24));
        let s = steady(3);
        let first = v.update(s[0].clone());
        let second = v.update(s[1].clone());
        // One error (at the first write), then silence.
        assert!(first.is_err() || second.is_err(), "{mode:?}");
        assert!(v.update(s[2].clone()).is_ok());
        assert!(v.finish(Some(s[2].clone())).is_ok());
    }
}

#[test]
fn ticker_keeps_to_its_schedule() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut t = Ticker::new(t0, ms(1000));
    assert_eq!(t.timeout(t0), ms(1000));
    assert_eq!(t.timeout_ms(t0 + Duration::from_micros(1)), 1000);
    assert!(!t.due(t0 + ms(999)));
    assert!(t.due(t0 + ms(1003)));
    // The next tick is at 2 s, not 1 s after the late wakeup.
    assert_eq!(t.timeout(t0 + ms(1003)), ms(997));
    assert!(!t.due(t0 + ms(1500)));
    // A wakeup 3.5 ticks late fires once and goes to the following tick.
    assert!(t.due(t0 + ms(5500)));
    assert!(!t.due(t0 + ms(5999)));
    assert_eq!(t.timeout(t0 + ms(5500)), ms(500));
    assert!(t.due(t0 + ms(6000)));
    assert_eq!(t.timeout_ms(t0 + ms(7000)), 0);
}
