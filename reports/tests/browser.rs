//! `index.html` in a real browser: Debian's headless Chromium opens the
//! page built from the stored report fixture, which must load with no
//! console error and no uncaught exception and lay out every plot at a
//! non-zero size.
//!
//! The browser is driven over the DevTools protocol on
//! `--remote-debugging-pipe` (JSON messages, each ended by a NUL byte, on
//! the browser's file descriptors 3 and 4): its `Runtime` and `Log`
//! domains report every console call, uncaught exception and error the
//! browser itself logs for the page, and `Runtime.evaluate` measures the
//! plots with the browser's own layout.
//!
//! Chromium is `/usr/bin/chromium` (`apt-get install chromium`; `.ci/run`
//! installs it), or the program `COLLAPSE_BENCH_CHROMIUM` names. Without
//! it the tests are skipped with a line on stderr, except under `CI=true`,
//! where they fail.

use reports::schema::ReportResults;
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How long one browser session may take, start to close, before the
/// browser is killed and the test fails.
const SESSION_LIMIT: Duration = Duration::from_secs(60);

/// The flags of every start: headless, and nothing that reaches for the
/// network (the test machines have none, and each attempt logs errors).
/// `--disable-dev-shm-usage`: shared memory in the temporary directory, as
/// containers have a small `/dev/shm`.
const FLAGS: [&str; 11] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
    "about:blank",
];

/// The Chromium to run: `COLLAPSE_BENCH_CHROMIUM` or `/usr/bin/chromium`.
/// `None` when it does not exist and this is not CI (the caller skips the
/// test); under `CI=true` a missing browser fails the test.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("COLLAPSE_BENCH_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!(
            "{} not found: under CI=true the browser tests must run, and .ci/run should have installed Chromium \
             (apt-get install chromium)",
            path.display()
        );
    }
    eprintln!("skipped: {} not found (apt-get install chromium to run this test)", path.display());
    None
}

/// An empty directory for one test's files, under cargo's temporary
/// directory for integration tests.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `file://` URL of the absolute `path`, bytes outside the characters
/// URLs leave as they are percent-encoded.
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// One running Chromium and its DevTools connection.
struct Browser {
    child: Child,
    /// The browser's file descriptor 3: commands to it.
    commands: std::io::PipeWriter,
    /// The browser's file descriptor 4, read by a thread of its own: its
    /// answers and events, parsed.
    messages: Receiver<Value>,
    /// Every event received so far, in order.
    events: Vec<Value>,
    next_id: u64,
    deadline: Instant,
    /// The browser's stderr, shown when something fails.
    stderr_path: PathBuf,
}

impl Browser {
    /// Start `chromium` with [`FLAGS`] and a new, empty profile in `dir`.
    /// The browser inherits the two pipes as its standard input and output
    /// and a shell moves them to descriptors 3 and 4, where
    /// `--remote-debugging-pipe` expects them.
    fn start(chromium: &Path, dir: &Path) -> Browser {
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        let stderr_path = dir.join("chromium.stderr");
        let (from_test, commands) = std::io::pipe().unwrap();
        let (answers, to_test) = std::io::pipe().unwrap();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg(chromium)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(FLAGS)
            .stdin(from_test)
            .stdout(to_test)
            .stderr(File::create(&stderr_path).unwrap());
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        // The test's copies of the browser's ends, closed: the reader sees
        // the end of the stream when the browser exits.
        drop(command);
        let (send, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut answers = BufReader::new(answers);
            let mut message = Vec::new();
            while answers.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop_if(|b| *b == 0);
                let value = serde_json::from_slice(&message).expect("the browser sends JSON");
                if send.send(value).is_err() {
                    break;
                }
                message.clear();
            }
        });
        let deadline = Instant::now() + SESSION_LIMIT;
        Browser { child, commands, messages, events: vec![], next_id: 0, deadline, stderr_path }
    }

    /// Kill the browser and fail with `what` and its stderr.
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        panic!("{what}\nchromium's stderr:\n{stderr}");
    }

    /// The next message from the browser; fails once the session's time
    /// is up or the browser has gone.
    fn receive(&mut self) -> Value {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(left) {
            Ok(message) => message,
            Err(mpsc::RecvTimeoutError::Timeout) => self.fail(&format!("the browser took over {SESSION_LIMIT:?}")),
            Err(mpsc::RecvTimeoutError::Disconnected) => self.fail("the browser closed its DevTools pipe"),
        }
    }

    /// Send `method` with `params` (to the page's `session`, or the browser
    /// itself) and return its result, keeping the events that come first.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        if let Err(e) = self.commands.write_all(&bytes) {
            self.fail(&format!("cannot send {method}: {e}"));
        }
        loop {
            let message = self.receive();
            if message["id"] == id {
                if !message["error"].is_null() {
                    self.fail(&format!("{method} failed: {}", message["error"]));
                }
                return message["result"].clone();
            }
            if message["method"].is_string() {
                self.events.push(message);
            }
        }
    }

    /// Wait for the event `method`, received already or still to come.
    fn wait_for(&mut self, method: &str) {
        while !self.events.iter().any(|e| e["method"] == method) {
            let message = self.receive();
            if message["method"].is_string() {
                self.events.push(message);
            }
        }
    }

    /// Close the browser, which must exit before the deadline.
    fn close(mut self) {
        self.call(None, "Browser.close", json!({}));
        while Instant::now() < self.deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.fail("the browser did not exit after Browser.close");
    }
}

impl Drop for Browser {
    /// A browser left by a failing test is killed, not orphaned.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the browser made of one page.
struct Visit {
    /// Console errors and failed assertions, uncaught exceptions, and the
    /// errors the browser logged for the page (a resource that failed to
    /// load, a blocked request, ...), one line each.
    errors: Vec<String>,
    /// Each `<figure>`'s id and the laid-out width and height, in CSS
    /// pixels, of the `<svg>` inside it (0 × 0 when it has none).
    figures: Vec<(String, f64, f64)>,
}

/// Every `<figure>`'s id and its `<svg>`'s rendered size, as JSON.
const MEASURE_FIGURES: &str = "JSON.stringify(Array.from(document.querySelectorAll('figure'), figure => {
    const svg = figure.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
    return [figure.id, box.width, box.height];
}))";

/// Open `page` in a new tab of a new browser, wait for its `load` event,
/// and measure its figures.
fn visit(chromium: &Path, dir: &Path, page: &Path) -> Visit {
    let mut browser = Browser::start(chromium, dir);
    let target = browser.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
    let attached =
        browser.call(None, "Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }));
    let session = attached["sessionId"].as_str().expect("a session id").to_owned();
    let session = Some(session.as_str());
    for domain in ["Runtime", "Log", "Page"] {
        browser.call(session, &format!("{domain}.enable"), json!({}));
    }
    let navigation = browser.call(session, "Page.navigate", json!({ "url": file_url(page) }));
    if let Some(error) = navigation["errorText"].as_str() {
        browser.fail(&format!("{} did not load: {error}", page.display()));
    }
    browser.wait_for("Page.loadEventFired");
    let measured =
        browser.call(session, "Runtime.evaluate", json!({ "expression": MEASURE_FIGURES, "returnByValue": true }));
    if !measured["exceptionDetails"].is_null() {
        browser.fail(&format!("measuring the figures threw: {}", measured["exceptionDetails"]));
    }
    let figures = serde_json::from_str(measured["result"]["value"].as_str().expect("a JSON string")).unwrap();
    let errors = browser.events.iter().filter_map(error_line).collect();
    browser.close();
    Visit { errors, figures }
}

/// The line for `event` when it reports an error on the page.
fn error_line(event: &Value) -> Option<String> {
    let params = &event["params"];
    match event["method"].as_str()? {
        "Runtime.consoleAPICalled" if params["type"] == "error" || params["type"] == "assert" => {
            let args: Vec<String> = params["args"]
                .as_array()?
                .iter()
                .map(|arg| arg["value"].as_str().map_or_else(|| arg["description"].to_string(), str::to_owned))
                .collect();
            Some(format!("console.{}: {}", params["type"].as_str()?, args.join(" ")))
        }
        "Runtime.exceptionThrown" => {
            let details = &params["exceptionDetails"];
            let text = details["exception"]["description"].as_str().or(details["text"].as_str())?;
            Some(format!("uncaught exception: {text}"))
        }
        "Log.entryAdded" if params["entry"]["level"] == "error" => {
            let entry = &params["entry"];
            let url = entry["url"].as_str().map_or_else(String::new, |url| format!(" ({url})"));
            Some(format!("{} error: {}{url}", entry["source"].as_str()?, entry["text"].as_str()?))
        }
        _ => None,
    }
}

/// The report page of the stored fixture, written into `dir`, and the
/// stems of its plots in order.
fn fixture_page(dir: &Path) -> (PathBuf, Vec<String>) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report.json");
    let results: ReportResults = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let plots = reports::plots::render(&results).unwrap();
    let html = reports::html::index_html(&reports::robot::report_text(&results), &plots);
    let page = dir.join("index.html");
    std::fs::write(&page, html).unwrap();
    (page, plots.into_iter().map(|plot| plot.stem).collect())
}

#[test]
fn the_report_page_loads_without_errors_and_shows_every_plot() {
    let Some(chromium) = chromium() else { return };
    let dir = scratch_dir("report");
    let (page, stems) = fixture_page(&dir);
    assert!(!stems.is_empty(), "the fixture has plots to show");
    let visit = visit(&chromium, &dir, &page);
    assert!(visit.errors.is_empty(), "the page logged errors:\n{}", visit.errors.join("\n"));
    let ids: Vec<&str> = visit.figures.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, stems, "one figure per plot, in order");
    for (id, width, height) in &visit.figures {
        assert!(*width > 0.0 && *height > 0.0, "figure {id}: its svg is laid out at {width} × {height}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The checker itself: a console error, an uncaught exception and a
/// missing image added to the page are all reported, and a plot hidden by
/// a style is measured at 0 × 0.
#[test]
fn the_checks_catch_errors_and_hidden_plots() {
    let Some(chromium) = chromium() else { return };
    let dir = scratch_dir("planted");
    let (page, stems) = fixture_page(&dir);
    let planted = "<style>figure:first-of-type svg{display:none}</style>\
                   <script>console.error('planted error')</script>\
                   <script>throw new Error('planted exception')</script><img src=\"missing.png\">";
    let html = std::fs::read_to_string(&page).unwrap().replace("</body>", &format!("{planted}</body>"));
    std::fs::write(&page, html).unwrap();
    let visit = visit(&chromium, &dir, &page);
    let errors = &visit.errors;
    let reported = |expected: &str| errors.iter().any(|e| e.starts_with(expected));
    assert!(reported("console.error: planted error"), "{errors:#?}");
    assert!(reported("uncaught exception: Error: planted exception"), "{errors:#?}");
    assert!(reported("network error: Failed to load resource: net::ERR_FILE_NOT_FOUND"), "{errors:#?}");
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(visit.figures[0], (stems[0].clone(), 0.0, 0.0), "the hidden plot");
    assert!(visit.figures[1..].iter().all(|(_, width, height)| *width > 0.0 && *height > 0.0));
    std::fs::remove_dir_all(&dir).unwrap();
}
