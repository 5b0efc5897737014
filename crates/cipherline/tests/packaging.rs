//! What a self-hoster installs besides the binary (issue 13, item 10), each
//! checked against the real `cipherline` binary: shell completions, man
//! pages, the systemd unit in contrib/ (and the SIGHUP its reload sends),
//! and `serve --check-config`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Server, bin};

/// The subcommands every completion script and the man pages must know.
const SUBCOMMANDS: [&str; 15] = [
    "keygen",
    "fingerprint",
    "known-servers",
    "serve",
    "chat",
    "send",
    "listen",
    "daemon",
    "tui",
    "history",
    "room",
    "files",
    "completions",
    "man",
    "help",
];

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether `program` can be run here (for optional checks).
fn have(program: &str, probe: &str) -> bool {
    Command::new(program).arg(probe).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[test]
fn completions_for_bash_zsh_and_fish_know_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.len() > 1000, "{shell}: a real script, not a stub: {script:?}");
        for sub in SUBCOMMANDS.iter().filter(|s| **s != "help") {
            assert!(script.contains(sub), "{shell}: no mention of the {sub} subcommand");
        }
        // Flags too, including nested subcommands' and the newest ones.
        for flag in ["check-config", "accept-new", "server-fingerprint", "data-dir"] {
            assert!(script.contains(flag), "{shell}: no mention of --{flag}");
        }
        // Each shell's own syntax check, where the shell is installed.
        let check = match shell {
            "bash" => Some(("bash", vec!["-n"])),
            "zsh" => Some(("zsh", vec!["-n"])),
            "fish" => Some(("fish", vec!["--no-execute"])),
            _ => None,
        };
        if let Some((program, args)) = check {
            if !have(program, "--version") {
                println!("SKIP: {program} is not installed; its completion script was not syntax-checked");
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("cipherline.{shell}"));
            std::fs::write(&path, &out.stdout).unwrap();
            let checked = Command::new(program).args(&args).arg(&path).output().unwrap();
            assert!(checked.status.success(), "{program} rejects the script: {}", text(&checked.stderr));
        }
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn completions_into_a_closed_pipe_do_not_panic() {
    // `cipherline completions bash | head -1`: the reader may be gone
    // before the script is written. An error, or success if the pipe
    // buffer took it all, but never a panic (exit 101).
    let mut child = bin().args(["completions", "bash"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(101), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
}

/// The first roff request of a page other than the string definitions
/// clap_mangen puts before the title (`.ie`/`.el ... .ds Aq`, the
/// apostrophe the page uses): the title line.
fn title_line(page: &str) -> &str {
    page.lines().find(|l| l.starts_with('.') && !l.starts_with(".ie ") && !l.starts_with(".el ")).unwrap_or_default()
}

#[test]
fn man_writes_a_titled_page_for_the_tool_and_each_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet is created.
    let out_dir = dir.path().join("share/man/man1");
    let out = run(&["man", "--dir", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let mut pages: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    pages.sort();
    let mut expected = vec!["cipherline.1".to_owned()];
    for sub in SUBCOMMANDS.iter().filter(|s| **s != "help") {
        expected.push(format!("cipherline-{sub}.1"));
    }
    for nested in ["list", "add", "remove"] {
        expected.push(format!("cipherline-known-servers-{nested}.1"));
    }
    for nested in ["create", "invite", "kick", "members", "join", "leave"] {
        expected.push(format!("cipherline-room-{nested}.1"));
    }
    for nested in ["list", "get", "cancel"] {
        expected.push(format!("cipherline-files-{nested}.1"));
    }
    expected.sort();
    assert_eq!(pages, expected, "one page per subcommand, none for clap's `help`");

    for page in &pages {
        let body = std::fs::read_to_string(out_dir.join(page)).unwrap();
        let name = page.trim_end_matches(".1");
        assert!(
            title_line(&body).starts_with(&format!(".TH {name} 1 ")),
            "{page}: the title comes first: {:?}",
            title_line(&body)
        );
        assert!(body.contains(".SH NAME") && body.contains(".SH SYNOPSIS"), "{page}");
        assert!(text(&out.stdout).contains(page.as_str()), "each page written is listed");
    }
    // Generated from the real flags and their help text.
    let serve = std::fs::read_to_string(out_dir.join("cipherline-serve.1")).unwrap();
    assert!(serve.contains(r"\-\-check\-config") && serve.contains(r"\-\-data\-dir"), "{serve}");
    let top = std::fs::read_to_string(out_dir.join("cipherline.1")).unwrap();
    assert!(top.contains(concat!("cipherline ", env!("CARGO_PKG_VERSION"))), "the footer names the version");
}

/// contrib/ in the repository.
fn contrib(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib").join(file)
}

/// A unit file as section -> key -> values (a key may repeat).
fn parse_unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut unit: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        assert!(!line.ends_with('\\'), "keep unit lines unbroken, so this parser reads them whole: {line}");
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        assert!(!section.is_empty(), "{key} outside a section");
        unit.entry(section.clone())
            .or_default()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    unit
}

#[test]
fn systemd_unit_is_hardened_and_serves_from_the_state_directory() {
    let unit = parse_unit(&std::fs::read_to_string(contrib("cipherline.service")).unwrap());
    let service = &unit["Service"];
    let one = |key: &str| -> &str {
        let values = service.get(key).unwrap_or_else(|| panic!("[Service] has no {key}="));
        assert_eq!(values.len(), 1, "{key}= set once");
        &values[0]
    };
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "cipherline"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        // Empty: no capabilities at all.
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    let families: Vec<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert!(families.contains(&"AF_INET") && families.contains(&"AF_INET6"), "{families:?}");
    assert!(families.iter().all(|f| ["AF_INET", "AF_INET6", "AF_UNIX"].contains(f)), "{families:?}");

    const CONFIG: &str = "--config /etc/cipherline/config.toml";
    let start = one("ExecStart");
    assert_eq!(start, format!("/usr/local/bin/cipherline serve --data-dir ${{STATE_DIRECTORY}} {CONFIG}"));
    // Before a start and a reload, the same command checks the files.
    let check = start.replacen(" serve ", " serve --check-config ", 1);
    assert_eq!(one("ExecStartPre"), check);
    assert_eq!(service["ExecReload"], [check.clone(), "/bin/kill -HUP $MAINPID".to_owned()]);
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);

    // The unit's command lines work with the real binary and the example
    // config it points at: the check passes, in a fresh state directory,
    // and leaves it empty (the key is made by the real start).
    let state = tempfile::tempdir().unwrap();
    let example = contrib("config.toml");
    let argv: Vec<String> = check
        .split_whitespace()
        .skip(1)
        .map(|a| match a {
            "${STATE_DIRECTORY}" => state.path().to_str().unwrap().to_owned(),
            "/etc/cipherline/config.toml" => example.to_str().unwrap().to_owned(),
            other => other.to_owned(),
        })
        .collect();
    let out = bin().args(&argv).output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("config OK"));
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0, "the check created nothing");
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if !have("systemd-analyze", "--version") {
        println!("SKIP: systemd-analyze is not installed; the unit was only parsed (see the test above)");
        return;
    }
    // verify insists that every Exec*= program exists: point them at the
    // binary under test. (--man=no: the man pages are not installed here.)
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("cipherline.service");
    let body = std::fs::read_to_string(contrib("cipherline.service")).unwrap();
    std::fs::write(&unit, body.replace("/usr/local/bin/cipherline", env!("CARGO_BIN_EXE_cipherline"))).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&unit).output().unwrap();
    let complaints: Vec<String> =
        text(&out.stderr).lines().filter(|l| l.contains("cipherline")).map(str::to_owned).collect();
    // verify only warns about a value it cannot parse ("ignoring"), so
    // warnings fail the test as well as the exit code.
    assert!(out.status.success() && complaints.is_empty(), "{}", text(&out.stderr));

    // The exposure score, where this systemd can compute it offline (250+):
    // 0 is fully locked down, 10 unprotected; the unit must stay below 2.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    if err.contains("unrecognized option") || err.contains("Unknown") {
        println!("SKIP: this systemd-analyze cannot score a unit offline");
        return;
    }
    assert!(out.status.success(), "exposure above 2.0:\n{}{err}", text(&out.stdout));
}

#[test]
fn sighup_as_sent_by_systemctl_reload_leaves_an_open_server_serving() {
    // The unit's ExecReload sends SIGHUP whatever the identity policy; under
    // the open policy nothing listened for it, so it ended the server.
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::quick(dir.path());
    let hup = Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    let out = server.client("send", "alice").arg("still there?").output().unwrap();
    assert!(out.status.success(), "the server must still relay after SIGHUP: {}", text(&out.stderr));
    let status = server.stop();
    assert!(status.success(), "a graceful stop afterwards, not death by SIGHUP: {status}");
}

/// `serve --check-config` with `args`, in a fresh data directory `data`.
fn check(data: &Path, args: &[&str]) -> Output {
    bin().args(["serve", "--check-config", "--data-dir", data.to_str().unwrap()]).args(args).output().unwrap()
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) {}

#[test]
fn check_config_accepts_a_good_configuration_without_binding_or_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The port is taken: a server would fail to bind it, the check does not try.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, format!("listen = \"{}\"\n[limits]\nmax_connections = 10\n", taken.local_addr().unwrap()))
        .unwrap();
    let out = check(&data, &["--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.lines().any(|l| l == "config OK"), "{stdout}");
    assert!(stdout.contains("created on first start"), "says the key does not exist yet: {stdout}");
    assert!(!data.exists(), "no data directory, key or names file made by a check");

    // An existing key is loaded and its fingerprint shown; an allowlist is parsed.
    let key = dir.path().join("server_x25519");
    let made = bin().args(["keygen", "--type", "x25519", "--out", key.to_str().unwrap()]).output().unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let fingerprint = text(&run(&["fingerprint", key.to_str().unwrap()]).stdout);
    let allowlist = dir.path().join("authorized_keys");
    std::fs::write(&allowlist, "# operators\nalice SHA256:6njK+v6F/tHu2DwzMG3QqW9dutwj1hXRVjjoyM8Ln/4\n").unwrap();
    let out = check(
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--authorized-keys",
            allowlist.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let sha = fingerprint.split_whitespace().find(|w| w.starts_with("SHA256:")).unwrap();
    assert!(stdout.contains(sha) && stdout.contains("allowlist") && stdout.contains("config OK"), "{stdout}");
    assert!(!data.exists());
}

#[test]
fn check_config_refuses_each_kind_of_bad_configuration_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let key = dir.path().join("server_x25519");
    assert!(
        bin().args(["keygen", "--type", "x25519", "--out", key.to_str().unwrap()]).output().unwrap().status.success()
    );
    set_mode(&key, 0o644);
    let key = key.to_str().unwrap().to_owned();
    let corrupt = write("authorized_keys", "alice not-a-fingerprint\n");

    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "a misspelt limit",
            vec!["--config".into(), write("typo.toml", "[limits]\nmax_conections = 5\n")],
            "max_conections",
        ),
        ("not TOML", vec!["--config".into(), write("broken.toml", "listen = \n")], "broken.toml"),
        (
            "an unusable limit",
            vec!["--config".into(), write("zero.toml", "[limits]\nmax_connections = 0\n")],
            "max_connections",
        ),
        (
            "a missing file",
            vec!["--config".into(), dir.path().join("absent.toml").to_str().unwrap().into()],
            "absent.toml",
        ),
        ("a bad address", vec!["--config".into(), write("addr.toml", "listen = \"nonsense\"\n")], "is not an address"),
        ("a key others can read", vec!["--config".into(), write("key.toml", &format!("key = {key:?}\n"))], "0644"),
        ("a missing key", vec!["--key".into(), dir.path().join("nokey.pem").to_str().unwrap().into()], "nokey.pem"),
        (
            "a corrupt allowlist",
            vec![
                "--config".into(),
                write("allow.toml", &format!("[identity]\npolicy = \"allowlist\"\nauthorized_keys = {corrupt:?}\n")),
            ],
            "line 1",
        ),
        (
            "an allowlist without its file",
            vec!["--config".into(), write("nofile.toml", "[identity]\npolicy = \"allowlist\"\n")],
            "authorized-keys file",
        ),
        ("--password-only without a password", vec!["--password-only".into()], "needs a password"),
    ];
    for (what, args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = check(&data, &args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{what}: exit 2 (usage/config)\n{stdout}{stderr}");
        assert!(!stdout.contains("config OK"), "{what}: {stdout}");
        assert!(stderr.starts_with("error: ") && stderr.contains(needle), "{what}: names the problem: {stderr}");
        assert!(stderr.contains("\nhint: "), "{what}: says what to do: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
    assert!(!data.exists(), "no check created anything");
}
