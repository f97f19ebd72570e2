//! A real browser for the example page (`examples/browser/index.html`):
//! headless Chromium driven over the DevTools protocol.
//!
//! [`PageServer`] serves the example folder on a loopback port;
//! [`Browser::open`] starts Chromium (Debian's `chromium`) with a fresh
//! profile, every background service off and every host name but
//! `127.0.0.1` unresolvable, loads one URL, and connects to the page's
//! DevTools WebSocket. [`Browser::eval`] runs JavaScript in the page and
//! returns its value; [`Browser::screenshot`] saves a PNG. Nothing is ever
//! loaded from anywhere but 127.0.0.1.

use crate::http;
use crate::poll::eventually;
use crate::prometheus::find_on_path;
use base64::Engine;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tungstenite::{Message, WebSocket};

/// How long Chromium may take to start and load the page.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The names Chromium goes by on `PATH`, in the order they are tried.
const NAMES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// The Chromium executable on `PATH`, if any.
pub fn chromium() -> Option<PathBuf> {
    NAMES.iter().find_map(|name| find_on_path(name))
}

/// The folder of the example page.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/browser")
}

/// Serves the files of one folder over HTTP on 127.0.0.1; stops on drop.
pub struct PageServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PageServer {
    /// Serves `dir` (`/` is `index.html`) on a free loopback port.
    pub fn start(dir: PathBuf) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
        let addr = listener.local_addr().expect("page server address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    serve_one(stream, &dir);
                }
            }
        });
        PageServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, the page's origin.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_one(mut stream: TcpStream, dir: &Path) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&byte[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let name = if path == "/" {
        "index.html"
    } else {
        path.trim_start_matches('/')
    };
    let file = (!name.contains("..") && !name.contains('/'))
        .then(|| std::fs::read(dir.join(name)).ok())
        .flatten();
    let (status, kind, body) = match file {
        Some(body) => ("200 OK", "text/html; charset=utf-8", body),
        None => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.write_all(&body);
}

/// A headless Chromium showing one page; killed (and its profile removed)
/// on drop.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    page: WebSocket<TcpStream>,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium on `url` (an `http://127.0.0.1:...` page) and
    /// connects to the page over the DevTools protocol.
    pub fn open(url: &str) -> Browser {
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "only 127.0.0.1 is loaded: {url}"
        );
        let exe = chromium().expect("chromium on PATH");
        let profile = crate::scratch::fresh_dir("chromium");
        let child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--disable-extensions",
                "--metrics-recording-only",
                "--no-default-browser-check",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1000,700",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that its helpers die with it.
            .process_group(0)
            .spawn()
            .expect("start chromium");
        let mut browser = Browser::connect(child, profile, url);
        browser.wait_loaded(url);
        browser
    }

    fn connect(mut child: Child, profile: PathBuf, url: &str) -> Browser {
        // Chromium writes the port it chose into the profile.
        let port_file = profile.join("DevToolsActivePort");
        let port = eventually(START_TIMEOUT, || {
            let text = std::fs::read_to_string(&port_file).ok()?;
            text.lines().next()?.trim().parse::<u16>().ok()
        });
        let Some(port) = port else {
            stop(&mut child, &profile);
            panic!(
                "chromium wrote no DevTools port into {}",
                port_file.display()
            );
        };
        let devtools = SocketAddr::from(([127, 0, 0, 1], port));
        let target = eventually(START_TIMEOUT, || {
            let list: Value =
                serde_json::from_slice(&devtools_get(devtools, "/json/list")?).ok()?;
            list.as_array()?
                .iter()
                .find(|t| {
                    t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url))
                })
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| panic!("chromium lists no page for {url}"));
        let stream = TcpStream::connect(devtools).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(START_TIMEOUT))
            .expect("read timeout");
        let (page, _) = tungstenite::client(target.as_str(), stream)
            .unwrap_or_else(|e| panic!("DevTools WebSocket {target}: {e}"));
        Browser {
            child,
            profile,
            page,
            next_id: 0,
        }
    }

    /// Waits until `url` (not the blank page before it) has loaded.
    fn wait_loaded(&mut self, url: &str) {
        let check = format!(
            "location.href === {} && document.readyState === 'complete'",
            Value::from(url)
        );
        let loaded = eventually(START_TIMEOUT, || (self.eval(&check) == true).then_some(()));
        assert!(loaded.is_some(), "the page did not finish loading");
    }

    /// Calls a DevTools method and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.page
            .send(Message::text(request.to_string()))
            .unwrap_or_else(|e| panic!("DevTools {method}: {e}"));
        loop {
            let message = self
                .page
                .read()
                .unwrap_or_else(|e| panic!("DevTools {method}: {e}"));
            let Message::Text(text) = message else {
                continue;
            };
            let Ok(answer) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if answer["id"] == id {
                if let Some(error) = answer.get("error") {
                    panic!("DevTools {method}: {error}");
                }
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page; returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("`{expression}` threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Saves a PNG of the page at `path` (its folder is created).
    pub fn screenshot(&mut self, path: &Path) {
        let result = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let data = result["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        stop(&mut self.child, &self.profile);
    }
}

/// Kills Chromium and every helper it started, then removes its profile.
/// Killing the browser process alone left its helpers (zygote, renderer,
/// network service) alive for a moment, writing into the profile after it
/// was removed: 4 of 14 browser tests left theirs behind.
fn stop(child: &mut Child, profile: &Path) {
    // The group's id is the browser's pid (`process_group(0)` above).
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
    // A helper may still finish a write it had begun when the signal came:
    // remove the profile until it stays removed.
    let _ = eventually(Duration::from_secs(5), || {
        let _ = std::fs::remove_dir_all(profile);
        std::thread::sleep(Duration::from_millis(50));
        (!profile.exists()).then_some(())
    });
}

/// A GET to the DevTools HTTP endpoint; the body when it answers 200.
fn devtools_get(addr: SocketAddr, path: &str) -> Option<Vec<u8>> {
    let response = http::fetch(addr, path, &[]).ok()?;
    (response.status == 200).then_some(response.body)
}

/// The repository's root: [`PageServer::start_tree`] serves parts of it.
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The folders of the repository a page may load from: the client library
/// (`clients/js/`, its test page included) and the example page.
pub const PAGE_FOLDERS: [&str; 2] = ["clients/js/", "examples/browser/"];

impl PageServer {
    /// Serves the files of `root` under the given folders (each ending in
    /// `/`; a path naming a folder is its `index.html`), each with its
    /// content type, so that a page can load ES modules from beside it.
    /// Anything else, and any path with `..`, is 404.
    pub fn start_tree(root: PathBuf, folders: &[&str]) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
        let addr = listener.local_addr().expect("page server address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let folders: Vec<String> = folders.iter().map(|f| (*f).to_owned()).collect();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    serve_tree_one(stream, &root, &folders);
                }
            }
        });
        PageServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// The content type for a file name, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("css") => "text/css; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve_tree_one(mut stream: TcpStream, root: &Path, folders: &[String]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split(' ').nth(1).unwrap_or("/");
    let path = target
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let name = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    };
    let allowed = !name.contains("..") && folders.iter().any(|f| name.starts_with(f.as_str()));
    let file = allowed
        .then(|| std::fs::read(root.join(&name)).ok())
        .flatten();
    let (status, kind, body) = match file {
        Some(body) => ("200 OK", content_type(&name), body),
        None => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.write_all(&body);
}
