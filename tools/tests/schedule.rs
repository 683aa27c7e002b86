//! `hectl schedule` against a running daemon: put a day, show it, get the file, edit and put
//! it back, lose a race with a stale copy (conflict, nothing lost), undo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{text, Daemon};

const TOKEN: &str = "tools-test-token-0123456789abcdef";

fn hectl(server: &str, token: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hectl"))
        .args(["schedule", "--server", server, "--token-file"])
        .arg(token)
        .args(args)
        .output()
        .unwrap()
}

/// A daemon with one channel `news` (a.ts, filler e.ts, UTC) and its API token in a file:
/// (daemon, server URL, token file).
fn start_daemon(dir: &tempfile::TempDir) -> (Daemon, String, PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media/a.ts");
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\napi_token = \"{TOKEN}\"\n\n[schedules]\nmedia_dir = {:?}\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"2M\"\nplaylist = [{:?}]\n\
             filler = [{:?}]\n",
            media.parent().unwrap().display().to_string(),
            media.display().to_string(),
            media.with_file_name("e.ts").display().to_string()
        ),
    )
    .unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let daemon = Daemon::run(&cfg);
    let server = format!("http://127.0.0.1:{port}");
    (daemon, server, token)
}

#[test]
fn edit_a_running_channels_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, server, token) = start_daemon(&dir);

    let day = dir.path().join("day.toml");
    std::fs::write(
        &day,
        "date = \"2026-11-23\"\n[[item]]\nstart = \"19:00:00\"\nfile = \"news.ts\"\ntitle = \"新闻联播\"\n",
    )
    .unwrap();
    let o = hectl(&server, &token, &["put", "news", day.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "news 2026-11-23: revision 1 written"
    );
    // news.ts is not uploaded yet: accepted, with a warning.
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("`news.ts` does not exist (yet)"),
        "{}",
        text(&o)
    );

    let o = hectl(&server, &token, &["show", "news", "--date", "2026-11-23"]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = text(&o);
    assert!(shown.contains("revision 1"), "{shown}");
    assert!(
        shown.contains("19:00:00") && shown.contains("新闻联播") && shown.contains("news.ts"),
        "{shown}"
    );

    // Two schedulers fetch revision 1; the first to put wins, the second gets the conflict.
    let copy = dir.path().join("copy.toml");
    let o = hectl(
        &server,
        &token,
        &[
            "get",
            "news",
            "--date",
            "2026-11-23",
            "-o",
            copy.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let fetched = std::fs::read_to_string(&copy).unwrap();
    assert!(fetched.contains("revision = 1"), "{fetched}");
    std::fs::write(&copy, fetched.replace("新闻联播", "晚间新闻")).unwrap();
    let o = hectl(&server, &token, &["put", "news", copy.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let stale = dir.path().join("stale.toml");
    std::fs::write(&stale, fetched.replace("新闻联播", "其他")).unwrap();
    let o = hectl(&server, &token, &["put", "news", stale.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("conflict (409)") && text(&o).contains("current revision 2"),
        "{}",
        text(&o)
    );

    // Undo the winner's edit.
    let o = hectl(&server, &token, &["undo", "news", "--date", "2026-11-23"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).trim(),
        "news 2026-11-23: revision 2 undone, now revision 3"
    );
    let o = hectl(
        &server,
        &token,
        &["show", "news", "--date", "2026-11-23", "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["items"][0]["title"], "新闻联播");

    // What the winner changed, from the history.
    let o = hectl(
        &server,
        &token,
        &["diff", "news", "--date", "2026-11-23", "1", "2"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let d = text(&o);
    assert!(d.contains("revision 1 → 2"), "{d}");
    assert!(
        d.contains("- title = \"新闻联播\"") && d.contains("+ title = \"晚间新闻\""),
        "{d}"
    );

    // Item-level edits: insert before 19:00, retitle, move, remove.
    let d = ["--date", "2026-11-23"];
    for args in [
        &[
            "insert", "news", "b.ts", "--at", "18:00:00", "--hard", "--title", "新",
        ][..],
        &["set", "news", "2", "--title", "晚间", "--rating", "12"][..],
        &["add", "news", "c.ts", "--title", "后"][..],
        &["move", "news", "3", "--to", "1"][..],
        &["remove", "news", "1"][..],
    ] {
        let mut a = args.to_vec();
        a.extend(d);
        let o = hectl(&server, &token, &a);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    let o = hectl(
        &server,
        &token,
        &["show", "news", "--date", "2026-11-23", "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let titles: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(titles, ["新", "晚间"], "{v}");
    assert_eq!(v["revision"], 8);
    // A wrong item number is refused before anything is sent.
    let o = hectl(
        &server,
        &token,
        &["remove", "news", "7", "--date", "2026-11-23"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no item 7: the day has 2 items"),
        "{}",
        text(&o)
    );

    // The resolved timeline: durations from the files, the gap filled, the overlap flagged.
    let next_day = dir.path().join("next.toml");
    std::fs::write(
        &next_day,
        "date = \"2026-11-24\"\n[[item]]\nstart = \"00:00:00\"\nfile = \"a.ts\"\ntitle = \"一\"\n\
         [[item]]\nfile = \"b.ts\"\ntitle = \"二\"\n[[item]]\nstart = \"00:00:08\"\nfile = \"c.ts\"\ntitle = \"三\"\n",
    )
    .unwrap();
    let o = hectl(
        &server,
        &token,
        &["put", "news", next_day.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = hectl(&server, &token, &["show", "news", "--date", "2026-11-24"]);
    assert!(o.status.success(), "{}", text(&o));
    let table = text(&o);
    assert!(table.contains("timeline in UTC"), "{table}");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("00:") || l.starts_with("23:"))
        .collect();
    assert!(
        rows[0].starts_with("00:00:00.000  00:00:05.000") && rows[0].contains("\"一\""),
        "{table}"
    );
    assert!(
        rows[1].contains("\"二\"") && rows[1].contains("OVERLAP: cut by item 3's hard start"),
        "{table}"
    );
    assert!(rows[2].starts_with("00:00:08.000  00:00:13.000"), "{table}");
    assert!(
        rows[3].contains("GAP") && rows[3].contains("e.ts"),
        "{table}"
    );
    // A file not there yet: accepted with a warning, and its slot is filler on the timeline
    // (as on air); what follows keeps its time.
    let later = dir.path().join("later.toml");
    std::fs::write(
        &later,
        "date = \"2026-11-25\"\n[[item]]\nstart = \"00:00:00\"\nfile = \"a.ts\"\ntitle = \"一\"\n\
         [[item]]\nstart = \"00:00:10\"\nfile = \"not-yet.ts\"\ntitle = \"未\"\n\
         [[item]]\nstart = \"00:00:20\"\nfile = \"b.ts\"\ntitle = \"三\"\n",
    )
    .unwrap();
    let o = hectl(&server, &token, &["put", "news", later.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(
            "warning: line 6: item 2 (00:00:10 \"未\"): `not-yet.ts` does not exist (yet)"
        ),
        "{}",
        text(&o)
    );
    let o = hectl(&server, &token, &["show", "news", "--date", "2026-11-25"]);
    assert!(o.status.success(), "{}", text(&o));
    let table = text(&o);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("00:")).collect();
    assert!(
        rows.iter()
            .any(|r| r.starts_with("00:00:20.000") && r.contains("\"三\"")),
        "{table}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("00:00:05.000  00:00:20.000") && r.contains("GAP")),
        "{table}"
    );
    assert!(
        table.contains("warning: line 9: item 2 (00:00:10 \"未\"): ")
            && table.contains("not-yet.ts: cannot open"),
        "{table}"
    );

    // Export as CSV, and the diff as JSON.
    let o = hectl(
        &server,
        &token,
        &["export", "news", "--date", "2026-11-24", "--format", "csv"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "start,duration,title,file\n00:00:00,,一,a.ts\n,,二,b.ts\n00:00:08,,三,c.ts\n"
    );
    let o = hectl(
        &server,
        &token,
        &["diff", "news", "--date", "2026-11-23", "1", "2", "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["from"].clone(), v["to"].clone()),
        (serde_json::json!(1), serde_json::json!(2))
    );
    assert!(
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "+ title = \"晚间新闻\""),
        "{v}"
    );

    // Status: that date is not today, so the channel loops its playlist.
    let o = Command::new(env!("CARGO_BIN_EXE_hectl"))
        .args(["status", "news", "--server", &server])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("no schedule: looping the playlist"),
        "{}",
        text(&o)
    );

    // Without a token: refused, and said so.
    let o = Command::new(env!("CARGO_BIN_EXE_hectl"))
        .args(["schedule", "--server", &server, "put", "news"])
        .arg(&day)
        .env_remove("HECTL_TOKEN")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("changes need a token"), "{}", text(&o));
}

fn hectl_epg(server: &str, token: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hectl"))
        .args(["epg", "--server", server, "--token-file"])
        .arg(token)
        .args(args)
        .output()
        .unwrap()
}

/// `hectl epg import`: XMLTV metadata lands on the items it lines up with (starts 30 s apart),
/// a programme of another hour is left alone; a malformed file is reported by line and column
/// and changes nothing. `hectl epg export` gives the daemon's guide as XMLTV and JSON.
#[test]
fn xmltv_into_a_schedule_and_the_guide_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, server, token) = start_daemon(&dir);
    // Today, so the guide (the coming days) has it too.
    let date = {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        chrono::DateTime::from_timestamp(secs + 3 * 3600, 0)
            .unwrap()
            .date_naive()
    };
    let day = dir.path().join("day.toml");
    std::fs::write(
        &day,
        format!(
            "date = \"{date}\"\n[[item]]\nstart = \"22:00:00\"\nfile = \"a.ts\"\n\n\
             [[item]]\nstart = \"23:00:00\"\nfile = \"a.ts\"\ntitle = \"Own title\"\n"
        ),
    )
    .unwrap();
    let o = hectl(&server, &token, &["put", "news", day.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let d = date.format("%Y%m%d");
    let xml = dir.path().join("guide.xml");
    std::fs::write(
        &xml,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n<tv>\n\
             <channel id=\"news.example.cn\"><display-name>News</display-name></channel>\n\
             <programme start=\"{d}220030 +0000\" stop=\"{d}223000 +0000\" channel=\"news.example.cn\">\n\
             <title lang=\"zh\">晚间新闻</title><desc lang=\"zh\">今日要闻 &amp; 天气</desc>\n\
             <category lang=\"en\">News</category><rating system=\"CHN\"><value>12+</value></rating>\n\
             </programme>\n\
             <programme start=\"{d}233000 +0000\" stop=\"{d}235000 +0000\" channel=\"news.example.cn\">\n\
             <title>Elsewhere</title></programme>\n</tv>\n"
        ),
    )
    .unwrap();
    let date_s = date.to_string();
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "import".into(),
            xml.display().to_string(),
            "--channel".into(),
            "news".into(),
            "--date".into(),
            date_s.clone(),
            "--xmltv-id".into(),
            "news.example.cn".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        hectl_epg(&server, &token, &refs)
    };
    let o = run(args(&["--dry-run"]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("nothing written"), "{}", text(&o));
    let o = run(args(&[]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1 items took XMLTV metadata (1 programmes unused); revision 2 written"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("item 2: no programme lines up"),
        "{}",
        text(&o)
    );
    let o = hectl(&server, &token, &["get", "news", "--date", &date_s]);
    let file = text(&o);
    assert!(file.contains("title = \"晚间新闻\""), "{file}");
    assert!(file.contains("description = \"今日要闻 & 天气\""), "{file}");
    assert!(file.contains("genre = \"News\""), "{file}");
    assert!(file.contains("rating = 12"), "{file}");
    assert!(file.contains("title = \"Own title\""), "{file}");

    // Malformed: line and column, and the schedule stays at revision 2.
    std::fs::write(
        &xml,
        "<tv>\n<programme start=\"2026133\" channel=\"news.example.cn\">\n<title>x</title></programme>\n</tv>\n",
    )
    .unwrap();
    let o = run(args(&[]));
    assert!(!o.status.success());
    assert!(text(&o).contains("line 2, column 1"), "{}", text(&o));
    std::fs::write(&xml, "<tv><programme start=\"20261201000000\"").unwrap();
    let o = run(args(&[]));
    assert!(!o.status.success());
    assert!(text(&o).contains("line 1, column"), "{}", text(&o));
    let o = hectl(&server, &token, &["get", "news", "--date", &date_s]);
    assert!(text(&o).contains("revision = 2"), "{}", text(&o));

    // The guide out: XMLTV (every channel) and JSON (one), with the merged title, once the
    // scheduler has published the edit.
    let out = dir.path().join("epg.xml");
    let started = std::time::Instant::now();
    loop {
        let o = hectl_epg(&server, &token, &["export", "-o", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        let xml = std::fs::read_to_string(&out).unwrap();
        let guide = epg::xmltv::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        if guide
            .programmes
            .iter()
            .any(|p| p.titles[0].value == "晚间新闻")
        {
            assert_eq!(guide.channels[0].id, "news.headend");
            break;
        }
        assert!(started.elapsed().as_secs() < 15, "{xml}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let o = hectl_epg(&server, &token, &["export", "--channel", "news"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["programmes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["titles"][0]["value"] == "晚间新闻"),
        "{v}"
    );
    let o = hectl_epg(&server, &token, &["export", "--channel", "nope"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("404"), "{}", text(&o));
}
