//! Whole-document tests of [`super::parse`]: accepted shapes, defaults, and error reports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::channel::SiConfig;
use super::input::parse_endpoint;
use super::*;

const EXAMPLE: &str = include_str!("../../../fixtures/configs/example.toml");

const ISSUE_SHAPE: &str = r#"
[http]
listen = "[::1]:8080"

[[channel]]
id = "news"
service_id = 101
name = "News HD"
provider = "Demo"
muxrate = "6M"                       # CBR bits/s, k/M suffixes
playlist = ["fixtures/media/a.ts", "fixtures/media/b.ts", "fixtures/media/d.ts"]   # loops

[[channel.output]]
url = "udp://[ff15::101]:5000"       # also rtp://..., IPv4 addresses, unicast
interface = "lo"
hop_limit = 1
"#;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn reject(text: &str) -> Vec<ConfigError> {
    match parse(text, Path::new("/etc/headend"), "test.toml") {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => errors.0,
    }
}

fn paths(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

fn message<'a>(errors: &'a [ConfigError], path: &str) -> &'a str {
    errors
        .iter()
        .find(|e| e.path == path)
        .map(|e| e.message.as_str())
        .unwrap_or_else(|| panic!("no error at {path}: {errors:#?}"))
}

#[test]
fn issue_shape_parses_with_defaults() {
    let config = parse(ISSUE_SHAPE, Path::new("/etc/headend"), "test.toml").unwrap();
    assert_eq!(config.http.listen, addr("[::1]:8080"));
    assert!(config.mpts.is_empty());
    let [news] = config.channels.as_slice() else {
        panic!("{config:#?}")
    };
    assert_eq!(news.id, "news");
    assert_eq!(news.service_id, 101);
    assert_eq!(news.name, "News HD");
    assert_eq!(news.provider, "Demo");
    assert_eq!(news.muxrate, Bitrate::from_bps(6_000_000));
    assert_eq!(news.transport_stream_id, 1);
    assert_eq!(
        news.playlist,
        ["a", "b", "d"].map(|n| PathBuf::from(format!("/etc/headend/fixtures/media/{n}.ts")))
    );
    assert_eq!(news.pids, PidPlan::default());
    assert_eq!(news.pcr_interval, Duration::from_millis(30));
    assert_eq!(news.psi_interval, Duration::from_millis(80));
    assert_eq!(news.clock_origin_90k, 0);
    assert_eq!(
        news.outputs,
        [OutputConfig {
            kind: OutputKind::Udp,
            dest: addr("[ff15::101]:5000"),
            interface: Some("lo".into()),
            hop_limit: 1,
            dscp: 0,
            source: None,
            seamless: false,
        }]
    );
}

#[test]
fn example_toml_parses() {
    let base_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/configs");
    let config = parse(EXAMPLE, &base_dir, "example.toml").unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = config.channels.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["news", "sport", "radio"]);
    let media = |name: &str| base_dir.join("../media").join(name);
    assert_eq!(
        config.channels[0].playlist,
        [media("a.ts"), media("b.ts"), media("d.ts")]
    );
    assert_eq!(config.channels[1].playlist, [media("c.ts")]);
    assert_eq!(config.channels[2].playlist, [media("e.ts")]);

    let news = &config.channels[0];
    assert_eq!(news.outputs.len(), 2);
    assert_eq!(news.outputs[0].dscp, 34);
    assert_eq!(news.outputs[1].kind, OutputKind::Rtp);
    assert_eq!(news.outputs[1].source, Some("::1".parse().unwrap()));

    let sport = &config.channels[1];
    assert_eq!(sport.muxrate.bps(), 8_000_000);
    assert_eq!(sport.clock_origin_90k, (1 << 33) - 90_000);
    assert_eq!(sport.pcr_interval, Duration::from_millis(20));
    assert_eq!(sport.pids.audio, 0x201);
    assert_eq!(
        sport.outputs[0].hop_limit, 2,
        "`ttl` is an alias of hop_limit"
    );
    assert_eq!(sport.outputs[0].dest, addr("239.1.2.3:5000"));

    let radio = &config.channels[2];
    assert_eq!(radio.muxrate.bps(), 2_500_000);
    assert!(radio.outputs.is_empty());

    let [bouquet] = config.mpts.as_slice() else {
        panic!("{config:#?}")
    };
    assert_eq!(bouquet.channels, ["news", "sport", "radio"]);
    assert_eq!(bouquet.transport_stream_id, 100);
    assert_eq!(bouquet.muxrate.to_string(), "20 Mbit/s");
    assert_eq!(bouquet.outputs[0].hop_limit, 64, "unicast default");
    assert_eq!(bouquet.outputs[0].dscp, 10);
}

#[test]
fn many_mistakes_are_all_reported_with_their_paths() {
    let errors = reject(
        r#"
[[channel]]                 # 0: unknown key
id = "zero"
service_id = 1
name = "Zero"
muxrate = "6M"
playlist = ["a.ts"]
colour = "red"

[[channel]]                 # 1: bad muxrate
id = "one"
service_id = 2
name = "One"
muxrate = "6X"
playlist = ["a.ts"]

[[channel]]                 # 2: bad url scheme
id = "two"
service_id = 3
name = "Two"
muxrate = "6M"
playlist = ["a.ts"]
[[channel.output]]
url = "srtx://239.1.1.1:5000"

[[channel]]                 # 3: duplicate service_id, IPv6 multicast without interface
id = "three"
service_id = 3
name = "Three"
muxrate = "6M"
playlist = ["a.ts"]
[[channel.output]]
url = "udp://[ff15::3]:5000"
[[channel.output]]
url = "udp://127.0.0.1:6000"

[[channel]]                 # 4: PID overlap, duplicate destination
id = "four"
service_id = 4
name = "Four"
muxrate = "6M"
playlist = ["a.ts"]
[channel.pids]
audio = 0x100
[[channel.output]]
url = "udp://127.0.0.1:6000"

[[mpts]]                    # unknown channel
id = "bouquet"
muxrate = "20M"
channels = ["two", "nope"]
"#,
    );
    assert_eq!(
        paths(&errors),
        [
            "channel[0]",
            "channel[1].muxrate",
            "channel[2].output[0].url",
            "channel[3].service_id",
            "channel[3].output[0].interface",
            "channel[4].pids.audio",
            "channel[4].output[0].url",
            "mpts[0].channels[1]",
        ],
        "{errors:#?}"
    );
    let m = |path| message(&errors, path);
    assert!(
        m("channel[0]").starts_with("unknown field `colour`, expected one of `id`,"),
        "{}",
        m("channel[0]")
    );
    assert!(m("channel[1].muxrate").starts_with("invalid bitrate `6X`: unknown unit"));
    assert_eq!(
        m("channel[2].output[0].url"),
        "unsupported scheme `srtx`, expected udp or rtp"
    );
    assert_eq!(
        m("channel[3].service_id"),
        "service_id 3 is already used by channel[2]"
    );
    assert!(m("channel[3].output[0].interface")
        .starts_with("required for the IPv6 multicast destination [ff15::3]:5000"));
    assert_eq!(
        m("channel[4].pids.audio"),
        "video PID 0x0100 and audio PIDs 0x0100..=0x010e overlap"
    );
    assert_eq!(
        m("channel[4].output[0].url"),
        "destination 127.0.0.1:6000 is already used by channel[3].output[1].url"
    );
    assert_eq!(m("mpts[0].channels[1]"), "unknown channel `nope`");
    assert_eq!(
        errors[2].to_string(),
        "test.toml: channel[2].output[0].url: unsupported scheme `srtx`, expected udp or rtp"
    );
}

#[test]
fn range_and_conflict_mistakes_are_all_reported() {
    let long = "x".repeat(65);
    let errors = reject(&format!(
        r#"
unknown_top = 1

[http]
listen = "localhost:8080"

[[channel]]
id = "Bad Id"
service_id = 0
name = ""
provider = "{long}"
muxrate = "50k"
transport_stream_id = 70000
playlist = []
pcr_interval = "50ms"
psi_interval = "5ms"
clock_origin = 8589934592
[[channel.output]]
url = "udp://239.1.2.3:0"
interface = "a very long interface name"
hop_limit = 0
dscp = 64

[[channel]]
id = "a"
service_id = 10
name = "A"
muxrate = "6M"
playlist = ["x.ts", ""]
[[channel.output]]
url = "udp://239.1.2.3:5000"
source = "::1"
[[channel.output]]
url = "udp://239.1.2.4:5000"
source = "239.0.0.1"

[[channel]]
id = "b"
service_id = 11
name = "B"
muxrate = "6M"
playlist = ["x.ts"]

[[channel]]
id = "a"
service_id = 12
name = "A2"
muxrate = "6M"
playlist = ["x.ts"]
[channel.pids]
pmt = 0x1001
video = 0x200
audio = 0x201
subtitle = 0x210
data = 0x220

[[mpts]]
id = "a"
muxrate = "10M"
channels = ["a", "b", "a"]

[[mpts]]
id = "m"
muxrate = "1M"
channels = []
"#
    ));
    assert_eq!(
        paths(&errors),
        [
            "unknown_top",
            "http.listen",
            "channel[0].id",
            "channel[0].service_id",
            "channel[0].name",
            "channel[0].provider",
            "channel[0].muxrate",
            "channel[0].transport_stream_id",
            "channel[0].playlist",
            "channel[0].pcr_interval",
            "channel[0].psi_interval",
            "channel[0].clock_origin",
            "channel[0].output[0].url",
            "channel[0].output[0].interface",
            "channel[0].output[0].hop_limit",
            "channel[0].output[0].dscp",
            "channel[1].playlist[1]",
            "channel[1].output[0].source",
            "channel[1].output[1].source",
            "channel[3].id",
            "mpts[0].id",
            "mpts[0].channels[2]",
            "mpts[0].channels[1]",
            "mpts[0].muxrate",
            "mpts[1].channels",
        ],
        "{errors:#?}"
    );
    let m = |path| message(&errors, path);
    assert_eq!(
        m("unknown_top"),
        "unknown key `unknown_top`, expected one of `http`, `engine`, `schedules`, `network`, `alerts`, `record`, `fleet`, `channel`, `mpts`, `emmg`"
    );
    assert!(m("channel[0].id").starts_with("invalid id `Bad Id`"));
    assert_eq!(
        m("channel[0].service_id"),
        "0 is out of range, expected 1..=65535"
    );
    assert_eq!(
        m("channel[0].provider"),
        "is 65 bytes long, expected at most 64"
    );
    assert_eq!(
        m("channel[0].muxrate"),
        "50 kbit/s is out of range, expected 100 kbit/s..=1 Gbit/s"
    );
    assert_eq!(
        m("channel[0].pcr_interval"),
        "50ms is out of range, expected 5ms..=40ms"
    );
    assert_eq!(
        m("channel[0].psi_interval"),
        "5ms is out of range, expected 10ms..=100ms"
    );
    assert!(m("channel[0].clock_origin").contains("expected 0..8589934592"));
    assert!(m("channel[0].output[0].url").contains("must not be 0"));
    assert_eq!(
        m("channel[0].output[0].hop_limit"),
        "0 is out of range, expected 1..=255"
    );
    assert_eq!(
        m("channel[0].output[0].dscp"),
        "64 is out of range, expected 0..=63"
    );
    assert!(m("channel[1].output[0].source").contains("different IP families"));
    assert!(m("channel[1].output[1].source").contains("unicast"));
    assert_eq!(m("channel[3].id"), "id `a` is already used by channel[1]");
    assert_eq!(m("mpts[0].id"), "id `a` is already used by channel[1]");
    assert_eq!(
        m("mpts[0].channels[1]"),
        "PID 0x0100 is used by both channel `a` (video) and channel `b` (video)"
    );
    assert_eq!(
        m("mpts[0].channels[2]"),
        "channel `a` is already listed at channels[0]"
    );
    assert_eq!(
        m("mpts[0].muxrate"),
        "10 Mbit/s is less than the sum of its channels' muxrates, 12 Mbit/s (a 6 Mbit/s + b 6 Mbit/s)"
    );
    assert_eq!(m("mpts[1].channels"), "must list at least one channel");
}

#[test]
fn a_broken_channel_is_still_known_to_mpts_and_claims() {
    let errors = reject(
        r#"
[[channel]]
id = "a"
service_id = 1
name = "A"
muxrate = "6M"
playlist = ["x.ts"]
pcr_interval = 30
[[channel.output]]
url = "udp://127.0.0.1:6000"

[[channel]]
id = "b"
service_id = 1
name = "B"
muxrate = "6M"
playlist = ["x.ts"]
[channel.pids]
pmt = 0x1001
video = 0x200
audio = 0x201
subtitle = 0x210
data = 0x220
[[channel.output]]
url = "udp://127.0.0.1:6000"

[[mpts]]
id = "m"
muxrate = "1M"
channels = ["a", "b"]
"#,
    );
    // `a` has a type error: no "unknown channel `a`", and its service_id and output are
    // still claimed. The mpts muxrate check is skipped since `a`'s muxrate is not trusted.
    assert_eq!(
        paths(&errors),
        [
            "channel[0].pcr_interval",
            "channel[1].service_id",
            "channel[1].output[0].url"
        ],
        "{errors:#?}"
    );
    assert!(message(&errors, "channel[0].pcr_interval").contains("a duration string with a unit"));
}

#[test]
fn wrong_shapes_are_reported() {
    let errors = reject("channel = 5\nmpts = [1]\nhttp = \"x\"\n");
    assert_eq!(
        paths(&errors),
        ["http", "channel", "mpts[0]"],
        "{errors:#?}"
    );
    assert_eq!(
        message(&errors, "channel"),
        "expected an array of tables (`[[channel]]`), found integer"
    );
    let errors = errors_of_output("[channel.output]\nurl = \"udp://127.0.0.1:1\"\n");
    assert_eq!(
        errors,
        ["channel[0].output: expected an array of tables (`[[channel.output]]`), found table"]
    );
    let errors = errors_of_output("[channel.pids]\nvideo = 0x100\nextra = 1\n");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("channel[0].pids: unknown field `extra`"),
        "{errors:?}"
    );
    let errors = errors_of_output(
        "[[channel.output]]\nurl = \"udp://127.0.0.1:1\"\nttl = 2\nhop_limit = 3\n",
    );
    assert_eq!(
        errors,
        ["channel[0].output[0]: duplicate field `hop_limit`"]
    );
}

fn errors_of_output(tail: &str) -> Vec<String> {
    let text = format!("[[channel]]\nid = \"a\"\nservice_id = 1\nname = \"A\"\nmuxrate = \"6M\"\nplaylist = [\"x.ts\"]\n{tail}");
    reject(&text)
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect()
}

#[test]
fn syntax_error_reports_line_and_column() {
    let errors = reject("[http]\nlisten = \"[::1]:8080\"\n\n[[channel]\nid = \"a\"\n");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].path, "line 4, column 10");
    assert!(
        errors[0].message.starts_with("TOML syntax error: "),
        "{}",
        errors[0].message
    );
    assert!(!errors[0].to_string().contains('\n'));
    let errors = reject("a = 1\na = 2\n");
    assert!(errors[0].path.starts_with("line 2, column "), "{errors:#?}");
}

#[test]
fn an_empty_document_is_valid() {
    let config = parse("", Path::new(""), "empty.toml").unwrap();
    assert_eq!(config.http, HttpConfig::default());
    assert_eq!(config.http.listen, addr("[::1]:8080"));
    assert!(config.channels.is_empty() && config.mpts.is_empty());
    let config = parse(
        "[http]\nlisten = \"127.0.0.1:0\"\n",
        Path::new(""),
        "t.toml",
    )
    .unwrap();
    assert_eq!(config.http.listen, addr("127.0.0.1:0"));
}

#[test]
fn load_reads_the_file_and_resolves_against_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headend.toml");
    std::fs::write(
        &path,
        "[[channel]]\nid = \"a\"\nservice_id = 1\nname = \"A\"\nmuxrate = \"6M\"\n\
         playlist = [\"media/a.ts\", \"media/missing.ts\", \"/abs/x.ts\"]\n",
    )
    .unwrap();
    let config = load(&path).unwrap();
    assert_eq!(
        config.channels[0].playlist,
        [
            dir.path().join("media/a.ts"),
            dir.path().join("media/missing.ts"),
            PathBuf::from("/abs/x.ts")
        ]
    );
    std::fs::create_dir(dir.path().join("media")).unwrap();
    std::fs::write(dir.path().join("media/a.ts"), b"").unwrap();
    assert_eq!(
        missing_media(&config),
        [
            (
                "channel[0].playlist[1]".to_owned(),
                dir.path().join("media/missing.ts"),
                "not found".to_owned()
            ),
            (
                "channel[0].playlist[2]".to_owned(),
                PathBuf::from("/abs/x.ts"),
                "not found".to_owned()
            ),
        ]
    );

    let absent = dir.path().join("absent.toml");
    let errors = load(&absent).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, absent.display().to_string());
    assert!(
        errors[0]
            .to_string()
            .contains(": cannot read the config file: "),
        "{}",
        errors[0]
    );
}

#[test]
fn no_input_panics() {
    let mut boundaries: Vec<usize> = EXAMPLE.char_indices().map(|(i, _)| i).collect();
    boundaries.push(EXAMPLE.len());
    for end in boundaries {
        let _ = parse(&EXAMPLE[..end], Path::new(""), "prefix.toml");
    }
    for text in [
        "\u{0}",
        "[[channel]]\n[[channel]]\n[[mpts]]\n[[mpts.output]]\n",
        "[[channel]]\nid = \"\u{7}\n\"\"\"\n",
        "[[channel]]\n\"a\nb\" = 1\n",
        "\"\\n\" = 1",
        "[[channel]]\nid = \"a\"\n[[channel.output]]\nurl = \"udp://[ff15::1%99]:5\"\n",
        "[[channel]]\nservice_id = 9223372036854775807\nclock_origin = -9223372036854775808\n",
        "[[channel]]\n[channel.pids]\naudio = 9223372036854775807\ndata = -9223372036854775808\n",
        "[[mpts]]\nid = 1\n[[mpts.output]]\nurl = 1\n",
    ] {
        if let Err(errors) = parse(text, Path::new(""), "odd.toml") {
            for error in &errors.0 {
                assert!(!error.to_string().contains('\n'), "{error:?}");
            }
        }
    }
}

#[test]
fn engine_table_sets_the_realtime_priority() {
    let cfg = parse("", Path::new("."), "t.toml").unwrap();
    assert_eq!(cfg.engine.realtime_priority, 10);
    let cfg = parse(
        "[engine]\nrealtime_priority = 0\n",
        Path::new("."),
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        cfg.engine,
        EngineConfig {
            realtime_priority: 0,
            threads: 2
        }
    );
    let cfg = parse("[engine]\nthreads = 1\n", Path::new("."), "t.toml").unwrap();
    assert_eq!(cfg.engine.threads, 1);
    let errors = reject("[engine]\nthreads = 0\n");
    assert_eq!(
        message(&errors, "engine.threads"),
        "0 is out of range, expected 1..=64"
    );
    let errors = reject("[engine]\nrealtime_priority = 100\n");
    assert_eq!(
        message(&errors, "engine.realtime_priority"),
        "100 is out of range, expected 0..=99"
    );
    let errors = reject("[engine]\npriority = 5\n");
    assert!(message(&errors, "engine").contains("unknown field `priority`"));
    let errors = reject("engine = 3\n");
    assert_eq!(
        message(&errors, "engine"),
        "expected a table (`[engine]`), found integer"
    );
}

#[test]
fn timezone_and_filler() {
    let base = "[[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"3M\"\nplaylist = [\"a.ts\"]\n";
    let cfg = parse(base, Path::new("/srv"), "t.toml").unwrap();
    assert_eq!(cfg.channels[0].timezone, epg::schedule::Tz::UTC);
    assert!(cfg.channels[0].filler.is_empty());
    let text =
        format!("{base}timezone = \"Asia/Shanghai\"\nfiller = [\"fill/1.ts\", \"/abs/2.ts\"]\n");
    let cfg = parse(&text, Path::new("/srv"), "t.toml").unwrap();
    assert_eq!(cfg.channels[0].timezone, epg::schedule::Tz::Asia__Shanghai);
    assert_eq!(
        cfg.channels[0].filler,
        vec![PathBuf::from("/srv/fill/1.ts"), PathBuf::from("/abs/2.ts")]
    );
    let errors = reject(&format!(
        "{base}timezone = \"Mars/Olympus\"\nfiller = [\"\"]\n"
    ));
    assert_eq!(
        message(&errors, "channel[0].timezone"),
        "unknown time zone `Mars/Olympus`, expected an IANA name such as Asia/Shanghai or UTC"
    );
    assert_eq!(message(&errors, "channel[0].filler[0]"), "empty path");
}

#[test]
fn channel_si_settings() {
    let base = "[[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"3M\"\nplaylist = [\"a.ts\"]\n";
    let cfg = parse(base, Path::new("/srv"), "t.toml").unwrap();
    assert_eq!(cfg.channels[0].si, SiConfig::default());
    assert!(cfg.channels[0].si.enabled);
    let text = format!(
        "{base}[channel.si]\nenabled = false\ncharset = \"gb2312\"\ndays = 3\ncountry = \"HKG\"\n\
         original_network_id = 8\nprofile = \"terrestrial\"\nlcn = 12\nxmltv_id = \"news.example.cn\"\n"
    );
    let si = parse(&text, Path::new("/srv"), "t.toml").unwrap().channels[0]
        .si
        .clone();
    assert_eq!(
        si,
        SiConfig {
            enabled: false,
            charset: epg::si::Charset::Gb2312,
            days: 3,
            country: "HKG".into(),
            original_network_id: 8,
            terrestrial: true,
            lcn: Some(12),
            xmltv_id: Some("news.example.cn".into()),
            xmltv: None,
        }
    );
    let errors = reject(&format!(
        "{base}[channel.si]\ncharset = \"big5\"\ndays = 99\ncountry = \"China\"\nprofile = \"cable tv\"\n\
         xmltv_id = \"news\"\n"
    ));
    assert!(message(&errors, "channel[0].si.xmltv_id").contains("like cctv1.cn"));
    assert_eq!(
        message(&errors, "channel[0].si.charset"),
        "`big5`, expected utf-8, gb2312, latin (ISO 6937) or iso-8859-1..15"
    );
    assert_eq!(
        message(&errors, "channel[0].si.days"),
        "99 is out of range, expected 1..=64"
    );
    assert!(message(&errors, "channel[0].si.country").contains("alpha-3"));
    assert!(message(&errors, "channel[0].si.profile").contains("expected cable"));
}

#[test]
fn network_and_channel_numbers() {
    let ch = |id: &str, sid: u16, tsid: u16, lcn: u16| {
        format!(
            "[[channel]]\nid = \"{id}\"\nservice_id = {sid}\nname = \"N\"\nmuxrate = \"3M\"\n\
             transport_stream_id = {tsid}\nplaylist = [\"a.ts\"]\n[channel.si]\nlcn = {lcn}\n"
        )
    };
    let net = "[network]\nnetwork_id = 8193\nname = \"城市有线\"\n";
    let text = format!("{net}{}{}", ch("a", 1, 1, 1), ch("b", 2, 2, 2));
    let cfg = parse(&text, Path::new("/srv"), "t.toml").unwrap();
    let n = cfg.network.unwrap();
    assert_eq!((n.network_id, n.name.as_str()), (8193, "城市有线"));
    assert_eq!(n.charset, epg::si::Charset::Utf8);
    assert_eq!(cfg.channels[1].si.lcn, Some(2));
    // Without [network]: no NIT, and equal transport_stream_ids are fine.
    let cfg = parse(
        &format!("{}{}", ch("a", 1, 1, 1), ch("b", 2, 1, 2)),
        Path::new("/srv"),
        "t.toml",
    )
    .unwrap();
    assert_eq!(cfg.network, None);
    // With it: every transport stream of the NIT distinct, numbers unique, the name codable.
    let errors = reject(&format!("{net}{}{}", ch("a", 1, 1, 7), ch("b", 2, 1, 7)));
    assert_eq!(
        message(&errors, "channel[1].si.lcn"),
        "logical channel number 7 is already used by channel[0]"
    );
    assert!(message(&errors, "channel[1].transport_stream_id")
        .contains("channel[0].transport_stream_id"));
    let errors = reject(&format!(
        "[network]\nnetwork_id = 0\nname = \"中文\"\ncharset = \"latin\"\nextra = 1\n{}",
        ch("a", 1, 1, 1)
    ));
    assert!(
        errors
            .iter()
            .any(|e| e.path.starts_with("network") && e.message.contains("extra")),
        "{errors:?}"
    );
    let errors = reject(&format!(
        "[network]\nnetwork_id = 0\nname = \"中文\"\ncharset = \"latin\"\n{}",
        ch("a", 1, 1, 1)
    ));
    assert_eq!(
        message(&errors, "network.network_id"),
        "0 is out of range, expected 1..=65535"
    );
    assert!(message(&errors, "network.name").contains("cannot be encoded"));
    let errors = reject(&ch("a", 1, 1, 1).replace("lcn = 1", "lcn = 1024"));
    assert_eq!(
        message(&errors, "channel[0].si.lcn"),
        "1024 is out of range, expected 1..=1023"
    );
}

#[test]
fn alerts_table_is_checked() {
    let key = epg::alert::sign::SigningKey::generate(epg::alert::sign::Algorithm::Ed25519)
        .unwrap()
        .verifying_key()
        .to_hex();
    let good = format!(
        "{ISSUE_SHAPE}\n[alerts]\ntoken = \"0123456789abcdef0123\"\ntables = [\"ebit\", \"scte18\"]\n\
         drill_channels = [\"news\"]\n[alerts.clips]\ndefault = \"alert.ts\"\n2 = \"orange.ts\"\n\
         [[alerts.sender]]\nkey_id = \"city\"\nalgorithm = \"ed25519\"\npublic_key = \"{key}\"\nsenders = [\"a@b\"]\n\
         [[alerts.area]]\ncode = \"310101\"\nchannels = [\"news\"]\n"
    );
    let config = parse(&good, Path::new("/etc/headend"), "test.toml").unwrap();
    let alerts = config.alerts.unwrap();
    assert_eq!(alerts.tables.len(), 2);
    assert_eq!(alerts.ebit_pid, 0x21);
    assert_eq!(
        alerts.audit_log,
        Path::new("/etc/headend/alerts-audit.jsonl")
    );
    assert_eq!(alerts.replay_window, std::time::Duration::from_secs(600));
    assert!(alerts
        .level_clips
        .contains(&(Some(2), PathBuf::from("/etc/headend/orange.ts"))));
    assert!(!format!("{:?}", alerts.token).contains("0123456789abcdef0123"));
    // One secret for both the admin and the alerts: the alerts would never get through.
    let twin = good.replacen(
        "[http]\n",
        "[http]\napi_token = \"0123456789abcdef0123\"\n",
        1,
    );
    assert!(message(&reject(&twin), "alerts.token").contains("same as http.api_token"));

    let bad = format!(
        "{ISSUE_SHAPE}\n[alerts]\ntoken = \"short\"\ntables = [\"eas\"]\nebit_pid = 5\n\
         drill_channels = [\"nope\"]\nresource_code = \"12\"\n[alerts.clips]\n7 = \"x.ts\"\n\
         [[alerts.sender]]\nkey_id = \"city\"\nalgorithm = \"rsa\"\npublic_key = \"00\"\nsenders = []\n\
         [[alerts.sender]]\nkey_id = \"prov\"\nalgorithm = \"sm2\"\npublic_key = \"04zz\"\nsenders = [\"x\"]\n\
         [[alerts.area]]\ncode = \"310101\"\nchannels = [\"ghost\"]\n"
    );
    let errors = reject(&bad);
    for path in [
        "alerts.token",
        "alerts.tables[0]",
        "alerts.ebit_pid",
        "alerts.drill_channels[0]",
        "alerts.resource_code",
        "alerts.clips.7",
        "alerts.clips",
        "alerts.sender[0].senders",
        "alerts.sender[0].algorithm",
        "alerts.sender[1].public_key",
        "alerts.area[0].channels[0]",
    ] {
        message(&errors, path);
    }
    assert!(message(&errors, "alerts.area[0].channels[0]").contains("ghost"));
    // The token is never echoed.
    assert!(!errors.iter().any(|e| e.message.contains("short")));
}

#[test]
fn channel_scrambling_is_checked() {
    let good = format!(
        "{ISSUE_SHAPE}\n[channel.scrambling]\ncipher = \"sm4-cbc\"\ncrypto_period = \"5s\"\n\
         ecm_key = \"000102030405060708090a0b0c0d0e0f\"\necm_wrap = \"sm4\"\non_failure = \"clear\"\n"
    );
    let config = parse(&good, Path::new("/etc/headend"), "test.toml").unwrap();
    let sc = config.channels[0].scrambling.clone().unwrap();
    assert_eq!(sc.cipher.to_string(), "sm4-cbc");
    assert_eq!(sc.crypto_period, Duration::from_secs(5));
    assert_eq!(sc.on_failure, OnFailure::Clear);
    assert_eq!(sc.ecm_pid, 0x1FF0);
    assert_eq!(sc.ca_system_id, 0x4AFF);
    assert!(matches!(sc.keys, KeySourceConfig::Random));
    // Key material never shows in Debug output.
    let shown = format!("{sc:?}");
    assert!(
        !shown.contains("0, 1, 2, 3") && !shown.contains("000102"),
        "{shown}"
    );

    let simulcrypt = format!(
        "{ISSUE_SHAPE}\n[channel.scrambling]\nkeys = \"simulcrypt\"\n\
         [channel.scrambling.simulcrypt]\necmg = \"127.0.0.1:4100\"\nsuper_cas_id = 0x4AD10001\n"
    );
    let config = parse(&simulcrypt, Path::new("/etc/headend"), "test.toml").unwrap();
    let sc = config.channels[0].scrambling.clone().unwrap();
    assert_eq!(sc.ca_system_id, 0x4AD1, "from the Super_CAS_id");
    let KeySourceConfig::Simulcrypt(s) = sc.keys else {
        panic!("{sc:?}")
    };
    assert_eq!(s[0].ecm_id, Some(101), "the service_id");
    assert_eq!((s[0].ecm_pid, s[0].version), (0x1FF0, VersionChoice::Auto));

    let bad = format!(
        "{ISSUE_SHAPE}\n[channel.scrambling]\ncipher = \"des\"\ncrypto_period = \"100ms\"\n\
         keys = \"file\"\non_failure = \"panic\"\necm_pid = 0x100\necm_key = \"xyz\"\niv = \"00\"\n"
    );
    let errors = reject(&bad);
    for path in [
        "channel[0].scrambling.cipher",
        "channel[0].scrambling.crypto_period",
        "channel[0].scrambling.key_file",
        "channel[0].scrambling.on_failure",
        "channel[0].scrambling.ecm_pid",
        "channel[0].scrambling.ecm_key",
        "channel[0].scrambling.iv",
    ] {
        message(&errors, path);
    }
    assert!(message(&errors, "channel[0].scrambling.ecm_pid").contains("`video`"));
    assert!(!errors.iter().any(|e| e.message.contains("xyz")));
}

#[test]
fn scrambled_channels_of_one_mpts_need_their_own_ecm_pids() {
    let text = "[[channel]]\nid = \"a\"\nservice_id = 1\nname = \"A\"\nmuxrate = \"2M\"\nplaylist = [\"a.ts\"]\n\
                [channel.scrambling]\n\n\
                [[channel]]\nid = \"b\"\nservice_id = 2\nname = \"B\"\nmuxrate = \"2M\"\nplaylist = [\"a.ts\"]\n\
                [channel.pids]\npmt = 0x1001\nvideo = 0x200\naudio = 0x201\nsubtitle = 0x210\ndata = 0x220\n\
                [channel.scrambling]\n\n\
                [[mpts]]\nid = \"m\"\nmuxrate = \"5M\"\nchannels = [\"a\", \"b\"]\n";
    let errors = reject(text);
    assert!(
        message(&errors, "channel[1].scrambling.ecm_pid").contains("channel `a`"),
        "{errors:#?}"
    );
}

#[test]
fn live_inputs_and_failover() {
    let text = "[[channel]]\nid = \"a\"\nservice_id = 1\nname = \"A\"\nmuxrate = \"6M\"\nplaylist = [\"slate.ts\"]\n\
        [channel.failover]\nloss_timeout = \"150ms\"\nrestore_after = \"30s\"\nmax_cc_errors = 20\nmin_bitrate = \"1M\"\n\
        [[channel.input]]\nname = \"main\"\nurl = \"rtp://239.1.1.1:5000\"\nsource = \"10.0.0.1\"\nservice_id = 7\n\
        [[channel.input]]\nname = \"backup\"\nurl = \"udp://[ff15::1:2]:5000\"\ninterface = \"eth1\"\n\
        [[channel.input]]\nname = \"unicast\"\nurl = \"udp://[::]:6000\"\n\
        [[channel.input]]\nname = \"pull\"\nurl = \"http://encoder.example:8000/live/news.ts?q=1\"\n\
        [[channel.input]]\nname = \"pull6\"\nurl = \"http://[::1]\"\n\
        [[channel.input]]\nname = \"srt-l\"\nurl = \"srt://[::1]:9000?mode=listener&passphrase=a%20passphrase&pbkeylen=32&latency=200&streamid=%23!::r=live\"\n\
        [[channel.input]]\nname = \"srt-c\"\nurl = \"srt://encoder.example:9001\"\n";
    let config = parse(text, Path::new("/etc/headend"), "test.toml").unwrap();
    let ch = &config.channels[0];
    assert_eq!(ch.inputs.len(), 7);
    assert_eq!(
        ch.inputs[0].endpoint,
        Endpoint::Datagram {
            rtp: true,
            addr: addr("239.1.1.1:5000")
        }
    );
    assert_eq!(ch.inputs[0].source, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(ch.inputs[0].service_id, Some(7));
    assert_eq!(ch.inputs[1].interface.as_deref(), Some("eth1"));
    assert_eq!(ch.inputs[2].endpoint.addr(), Some(addr("[::]:6000")));
    assert_eq!(
        ch.inputs[3].endpoint,
        Endpoint::Http {
            host: "encoder.example".into(),
            port: 8000,
            path: "/live/news.ts?q=1".into(),
            tls: false,
        }
    );
    assert_eq!(ch.inputs[4].endpoint.to_string(), "http://[::1]:80/");
    assert_eq!(
        parse_endpoint("HTTPS://encoder.example/live.ts")
            .unwrap()
            .to_string(),
        "https://encoder.example:443/live.ts"
    );
    assert_eq!(
        ch.inputs[5].endpoint,
        Endpoint::Srt(SrtEndpoint {
            listener: true,
            rendezvous: false,
            local_port: None,
            host: Some("::1".into()),
            port: 9000,
            latency_ms: 200,
            passphrase: Some("a passphrase".into()),
            key_len: 32,
            stream_id: Some("#!::r=live".into()),
        })
    );
    assert_eq!(
        ch.inputs[6].endpoint,
        Endpoint::Srt(SrtEndpoint {
            listener: false,
            rendezvous: false,
            local_port: None,
            host: Some("encoder.example".into()),
            port: 9001,
            latency_ms: 120,
            passphrase: None,
            key_len: 16,
            stream_id: None,
        })
    );
    let rdv = parse_endpoint("srt://[::1]:9000?mode=rendezvous&port=9002").unwrap();
    assert_eq!(
        rdv.to_string(),
        "srt://[::1]:9000?mode=rendezvous",
        "shown without secrets or local details"
    );
    let Endpoint::Srt(rdv) = rdv else {
        panic!("{rdv:?}")
    };
    assert!(rdv.rendezvous && !rdv.listener);
    assert_eq!(rdv.local_port, Some(9002));
    for (url, why) in [
        ("srt://:9000?mode=caller", "a caller needs a host to call"),
        (
            "srt://:9000?mode=rendezvous",
            "a rendezvous needs the peer's host",
        ),
        (
            "srt://:9000?mode=listener&port=9001",
            "a listener's port is the one",
        ),
        (
            "srt://h:9000?mode=rendezvous&port=0",
            "the local port must be",
        ),
        (
            "srt://h:9000?mode=broadcast",
            "(caller, listener or rendezvous)",
        ),
        ("srt://h:9000?pbkeylen=24", "pbkeylen needs a passphrase"),
        ("srt://h:9000?passphrase=short", "10 to 79 bytes"),
        ("srt://h:9000?latency=x", "latency is milliseconds"),
        (
            "srt://h:9000?payload_size=1316",
            "unsupported parameter `payload_size`",
        ),
        ("srt://h", "a port is required"),
        ("https://", "expected http[s]://host[:port]/path"),
    ] {
        let e = parse_endpoint(url).expect_err(url);
        assert!(e.contains(why), "{url}: {e}");
    }
    assert_eq!(ch.failover.loss_timeout, Duration::from_millis(150));
    assert_eq!(ch.failover.restore_after, Duration::from_secs(30));
    assert_eq!(ch.failover.lead, Duration::from_millis(300));
    assert_eq!(ch.failover.max_cc_errors, 20);
    assert_eq!(ch.failover.min_bitrate_bps, Some(1_000_000));

    let errors = errors_of_output(
        "[channel.failover]\nloss_timeout = \"5ms\"\nbogus = 1\n\
         [[channel.input]]\nname = \"m\"\nurl = \"srt://[::1]:9000?mode=sideways\"\n\
         [[channel.input]]\nname = \"m\"\nurl = \"udp://[ff15::1]:5000\"\n\
         [[channel.input]]\nname = \"Bad Name\"\nurl = \"udp://239.1.1.1:5000\"\nsource = \"ff15::1\"\n\
         [[channel.input]]\nname = \"u\"\nurl = \"udp://127.0.0.1:5000\"\nsource = \"10.0.0.1\"\n\
         [[channel.input]]\nname = \"v6\"\nurl = \"udp://[ff15::2]:5000\"\ninterface = \"lo\"\nsource = \"fd00::1\"\n\
         [[channel.input]]\nname = \"c\"\nurl = \"udp://127.0.0.1:5001\"\nca = \"/dev/null\"\n\
         [[channel.input]]\nname = \"d\"\nurl = \"https://h/x.ts\"\nca = \"/nonexistent/ca.pem\"\n",
    );
    let joined = errors.join("\n");
    for want in [
        "channel[0].failover: unknown field `bogus`",
        "channel[0].input[0].url: invalid url `srt://[::1]:9000?mode=sideways`: mode `sideways` is not supported (caller, listener or rendezvous)",
        "channel[0].input[1].interface: required to join the IPv6 group ff15::1",
        "channel[0].input[1].name: input `m` is named twice",
        "channel[0].input[2].name: invalid id `Bad Name`",
        "channel[0].input[2].source: source ff15::1 must be a unicast address",
        "channel[0].input[3].source: a source-specific join needs a multicast group",
        "channel[0].input[5].ca: applies to https:// inputs only",
        "channel[0].input[5].ca: /dev/null: no PEM certificate in it",
        "channel[0].input[6].ca: /nonexistent/ca.pem: ",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in:\n{joined}"
        );
    }
}

/// `[http]`'s client bounds: defaults, values, and each out-of-range key named.
#[test]
fn http_client_bounds() {
    let config = parse(
        "[http]\nmax_connections = 4096\nheader_timeout = \"5s\"\nidle_timeout = \"30s\"\n\
         request_timeout = \"1m\"\n",
        Path::new("."),
        "test.toml",
    )
    .unwrap();
    assert_eq!(config.http.max_connections, 4096);
    assert_eq!(config.http.header_timeout, Duration::from_secs(5));
    assert_eq!(config.http.idle_timeout, Duration::from_secs(30));
    assert_eq!(config.http.request_timeout, Duration::from_secs(60));
    let d = HttpConfig::default();
    assert_eq!(
        (
            d.max_connections,
            d.header_timeout,
            d.idle_timeout,
            d.request_timeout
        ),
        (
            1024,
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(120)
        )
    );
    let errors = reject(
        "[http]\nmax_connections = 0\nheader_timeout = \"500ms\"\nidle_timeout = \"2h\"\n\
         request_timeout = \"0s\"\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "http.header_timeout",
            "http.idle_timeout",
            "http.request_timeout",
            "http.max_connections"
        ]
    );
    assert!(message(&errors, "http.max_connections").contains("1..=100000"));
}

/// `[[http.token]]`: names, roles, channel scopes, files relative to the config file; each
/// mistake named by its key.
#[test]
fn http_tokens() {
    let config = parse(
        "[http]\n[[http.token]]\nname = \"ann\"\nrole = \"scheduler\"\nfile = \"tokens/ann\"\nchannels = [\"news\"]\n\
         [[http.token]]\nname = \"ops.1\"\nrole = \"operator\"\nfile = \"/etc/headend/ops\"\n\
         [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"N\"\nmuxrate = \"2M\"\nplaylist = [\"a.ts\"]\n",
        Path::new("/srv/headend"),
        "test.toml",
    )
    .unwrap();
    let t = &config.http.tokens;
    assert_eq!(
        (
            t[0].name.as_str(),
            t[0].role,
            t[0].file.as_path(),
            t[0].channels.clone()
        ),
        (
            "ann",
            Role::Scheduler,
            Path::new("/srv/headend/tokens/ann"),
            Some(vec!["news".to_owned()])
        )
    );
    assert_eq!(
        (t[1].role, t[1].file.as_path(), &t[1].channels),
        (Role::Operator, Path::new("/etc/headend/ops"), &None)
    );
    let errors = reject(
        "[http]\n[[http.token]]\nname = \"a b\"\nrole = \"root\"\nfile = \"x\"\n\
         [[http.token]]\nname = \"v\"\nrole = \"viewer\"\nfile = \"y\"\nchannels = [\"news\"]\n\
         [[http.token]]\nname = \"v\"\nrole = \"scheduler\"\nfile = \"z\"\nchannels = [\"nope\"]\n\
         [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"N\"\nmuxrate = \"2M\"\nplaylist = [\"a.ts\"]\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "http.token[0].name",
            "http.token[0].role",
            "http.token[1].channels",
            "http.token[2].name",
        ],
        "{errors:?}"
    );
    assert!(message(&errors, "http.token[0].role").contains("viewer, scheduler"));
    // The unknown channel is named once the rest is right.
    let errors = reject(
        "[http]\n[[http.token]]\nname = \"s\"\nrole = \"scheduler\"\nfile = \"z\"\nchannels = [\"nope\"]\n\
         [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"N\"\nmuxrate = \"2M\"\nplaylist = [\"a.ts\"]\n",
    );
    assert_eq!(paths(&errors), ["http.token[0].channels"]);
    assert!(message(&errors, "http.token[0].channels").contains("no channel `nope`"));
}

/// Under a service manager's state and logs directories, the defaults of what the daemon
/// writes go there; what the config names stays relative to the config file.
#[test]
fn defaults_go_to_the_service_directories() {
    let dirs = ServiceDirs {
        state: Some(PathBuf::from("/var/lib/headend")),
        logs: Some(PathBuf::from("/var/log/headend")),
    };
    let key = epg::alert::sign::SigningKey::generate(epg::alert::sign::Algorithm::Ed25519)
        .unwrap()
        .verifying_key()
        .to_hex();
    let text = format!("[alerts]\ntoken = \"0123456789abcdef0123\"\n[alerts.clips]\ndefault = \"alert.ts\"\n\
                [[alerts.sender]]\nkey_id = \"city\"\nalgorithm = \"ed25519\"\npublic_key = \"{key}\"\nsenders = [\"a@b\"]\n[[alerts.area]]\ncode = \"310101\"\nchannels = [\"news\"]\n\
                [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"N\"\nmuxrate = \"2M\"\nplaylist = [\"a.ts\"]\n");
    let c = parse_in(&text, Path::new("/etc/headend"), &dirs, "test.toml").unwrap();
    let alerts = c.alerts.as_ref().unwrap();
    assert_eq!(
        (
            c.schedules.dir.as_path(),
            c.record.file.as_path(),
            alerts.media_dir.as_path(),
            alerts.audit_log.as_path(),
            c.http.audit_log.as_path()
        ),
        (
            Path::new("/var/lib/headend/schedules"),
            Path::new("/var/lib/headend/record.jsonl"),
            Path::new("/var/lib/headend/alert-media"),
            Path::new("/var/log/headend/alerts-audit.jsonl"),
            Path::new("/var/log/headend/api-audit.jsonl")
        )
    );
    let named = format!("[schedules]\ndir = \"sched\"\n[record]\nfile = \"r.jsonl\"\n[http]\naudit_log = \"a.jsonl\"\n{text}");
    let c = parse_in(&named, Path::new("/etc/headend"), &dirs, "test.toml").unwrap();
    assert_eq!(c.schedules.dir, Path::new("/etc/headend/sched"));
    assert_eq!(c.record.file, Path::new("/etc/headend/r.jsonl"));
    assert_eq!(c.http.audit_log, Path::new("/etc/headend/a.jsonl"));
    // Without them, beside the config file as before.
    let c = parse(&text, Path::new("/etc/headend"), "test.toml").unwrap();
    assert_eq!(c.schedules.dir, Path::new("/etc/headend/schedules"));
    assert_eq!(c.http.audit_log, Path::new("/etc/headend/api-audit.jsonl"));
}

/// `[management]`: TLS files relative to the config file, both or neither; off loopback it
/// needs TLS.
#[test]
fn management_listener() {
    let c = parse(
        "[management]\nlisten = \"[::1]:8443\"\n",
        Path::new("/etc/headend"),
        "test.toml",
    )
    .unwrap();
    assert_eq!(
        c.management,
        Some(ManagementConfig {
            listen: addr("[::1]:8443"),
            tls: None
        })
    );
    let c = parse(
        "[management]\nlisten = \"192.0.2.1:8443\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n",
        Path::new("/etc/headend"),
        "test.toml",
    )
    .unwrap();
    assert_eq!(
        c.management.unwrap().tls,
        Some((
            PathBuf::from("/etc/headend/tls/cert.pem"),
            PathBuf::from("/etc/headend/tls/key.pem")
        ))
    );
    let errors = reject("[management]\nlisten = \"192.0.2.1:8443\"\n");
    assert_eq!(paths(&errors), ["management.listen"]);
    assert!(message(&errors, "management.listen").contains("needs TLS"));
    let errors = reject("[management]\nlisten = \"127.0.0.1:8443\"\ntls_cert = \"c.pem\"\n");
    assert_eq!(paths(&errors), ["management.tls_key"]);
    assert!(parse("", Path::new("."), "t.toml")
        .unwrap()
        .management
        .is_none());
}

#[test]
fn channel_archive_settings() {
    let base = "[[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"3M\"\nplaylist = [\"a.ts\"]\n";
    let cfg = parse(base, Path::new("/srv"), "t.toml").unwrap();
    assert!(cfg.channels[0].archive.is_none());
    let cfg = parse(
        &format!("{base}[channel.archive]\n"),
        Path::new("/srv"),
        "t.toml",
    )
    .unwrap();
    let a = cfg.channels[0].archive.clone().unwrap();
    assert_eq!(a.dir, PathBuf::from("/srv/archive"));
    assert_eq!(a.keep, Duration::from_secs(7 * 86_400));
    assert_eq!(a.segment, Duration::from_secs(4));
    assert_eq!(a.max_bytes, None);
    let cfg = parse(
        &format!("{base}[channel.archive]\ndir = \"/data/arch\"\nkeep = \"2d12h\"\nmax_bytes = \"1.5Ti\"\nsegment = \"6s\"\n"),
        Path::new("/srv"),
        "t.toml",
    )
    .unwrap();
    let a = cfg.channels[0].archive.clone().unwrap();
    assert_eq!(a.dir, PathBuf::from("/data/arch"));
    assert_eq!(a.keep, Duration::from_secs(2 * 86_400 + 12 * 3600));
    assert_eq!(a.max_bytes, Some(3 << 39));
    let errors = reject(&format!(
        "{base}[channel.archive]\nkeep = \"10s\"\nmax_bytes = \"5X\"\nsegment = \"1s\"\nkey_period = \"10s\"\n"
    ));
    assert_eq!(
        paths(&errors),
        [
            "channel[0].archive.keep",
            "channel[0].archive.segment",
            "channel[0].archive.key_period",
            "channel[0].archive.max_bytes"
        ]
    );
    assert!(message(&errors, "channel[0].archive.max_bytes").contains("unknown unit `X`"));
    let errors = reject(&format!(
        "{base}[channel.archive]\nencrypt_on_disk = true\n"
    ));
    assert!(
        message(&errors, "channel[0].archive.encrypt_on_disk").contains("needs `key_file`"),
        "{errors:#?}"
    );
    let errors = reject(&format!("{base}[channel.archive]\nkept = \"1d\"\n"));
    assert!(
        message(&errors, "channel[0].archive").contains("unknown field `kept`"),
        "{errors:#?}"
    );
}

#[test]
fn fleet_settings() {
    let ch = "[[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"3M\"\nplaylist = [\"a.ts\"]\n";
    let cfg = parse(ch, Path::new("/srv"), "t.toml").unwrap();
    assert!(cfg.fleet.is_none());
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:8080\"\n\n[fleet]\netcd = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379/\"]\nnode = \"he-01\"\n\n{ch}prefer = [\"he-02\", \"he-01\"]\n"
    );
    let cfg = parse(&text, Path::new("/srv"), "t.toml").unwrap();
    let f = cfg.fleet.unwrap();
    assert_eq!(f.node, "he-01");
    assert_eq!(f.capacity, 300);
    assert_eq!(f.lease, Duration::from_secs(3));
    assert_eq!(f.prefix, "/headend/");
    assert_eq!(f.api, "http://127.0.0.1:8080");
    assert_eq!(f.margin(), Duration::from_millis(300));
    assert_eq!(f.call_timeout(), Duration::from_secs(1));
    assert_eq!(cfg.channels[0].prefer, ["he-02", "he-01"]);
    // The beacon: on the API's host by default, a port of the system's choosing; an API on
    // loopback (`[http] listen`'s default) is no address for the others: the one toward etcd.
    assert_eq!(f.watch, Watch::FromEtcd);
    let f = parse(
        &text.replace("127.0.0.1:8080", "10.1.2.3:8080"),
        Path::new("/srv"),
        "t.toml",
    )
    .unwrap()
    .fleet
    .unwrap();
    assert_eq!(f.watch, Watch::At("10.1.2.3:0".parse().unwrap()));
    let fleet = "[fleet]\netcd = [\"http://a:1\"]\nnode = \"a\"\n";
    let with = |extra: &str| {
        parse(
            &format!("{fleet}{extra}\n{ch}"),
            Path::new("/srv"),
            "t.toml",
        )
    };
    let f = with("watch = \"[::1]:7600\"").unwrap().fleet.unwrap();
    assert_eq!(f.watch, Watch::At("[::1]:7600".parse().unwrap()));
    assert_eq!(
        with("watch = \"off\"").unwrap().fleet.unwrap().watch,
        Watch::Off
    );
    // An API on a name or on every address (nothing the others can dial): the beacon is on
    // the address this node reaches etcd from.
    let f = with("api = \"http://he-01.example:8080\"")
        .unwrap()
        .fleet
        .unwrap();
    assert_eq!(f.watch, Watch::FromEtcd);
    let f = with("api = \"http://0.0.0.0:8080\"")
        .unwrap()
        .fleet
        .unwrap();
    assert_eq!(f.watch, Watch::FromEtcd);
    for bad in ["0.0.0.0:7600", "he-01:7600", "7600"] {
        let errors = reject(&format!("{fleet}watch = \"{bad}\"\n"));
        assert!(
            message(&errors, "fleet.watch").contains("off"),
            "{bad}: {errors:?}"
        );
    }
    let errors = reject(
        "[fleet]\netcd = [\"https://a:1\", \"http://b\"]\nnode = \"he 01\"\ncapacity = 0\nlease = \"1500ms\"\nprefix = \"headend\"\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "fleet.etcd[0]",
            "fleet.etcd[1]",
            "fleet.node",
            "fleet.capacity",
            "fleet.lease",
            "fleet.prefix"
        ]
    );
    assert!(message(&errors, "fleet.lease").contains("whole seconds"));
    let errors = reject("[fleet]\nnode = \"a\"\n");
    assert!(message(&errors, "fleet.etcd").contains("1 to 9"));
    let errors = reject("[fleet]\netcd = [\"http://a:1\"]\nnode = \"a\"\nleases = 3\n");
    assert!(message(&errors, "fleet").contains("unknown field `leases`"));
    let errors = reject(&format!("{ch}prefer = [\"he-01\"]\n"));
    assert!(message(&errors, "channel[0].prefer").contains("[fleet]"));
}

#[test]
fn several_cas_per_channel_and_emmgs() {
    let two = format!(
        "{ISSUE_SHAPE}\n[channel.scrambling]\nkeys = \"simulcrypt\"\necm_pid = 0x1F00\n\
         [[channel.scrambling.simulcrypt]]\necmg = \"127.0.0.1:4100\"\nsuper_cas_id = 0x4AD10000\nprotocol_version = 2\n\
         [[channel.scrambling.simulcrypt]]\necmg = \"127.0.0.1:4101\"\nsuper_cas_id = 0x4AE20001\nprotocol_version = \"auto\"\n\
         [[emmg]]\nlisten = \"127.0.0.1:4200\"\nudp = \"127.0.0.1:4201\"\nclient_id = 0x4AE20000\nbandwidth = \"64k\"\nemm_pid = 0x1F10\n"
    );
    let config = parse(&two, Path::new("/etc/headend"), "test.toml").unwrap();
    let sc = config.channels[0].scrambling.clone().unwrap();
    assert_eq!(sc.ecm_streams(), vec![(0x1F00, 0x4AD1), (0x1F01, 0x4AE2)]);
    let KeySourceConfig::Simulcrypt(cas) = &sc.keys else {
        panic!("{sc:?}")
    };
    assert_eq!(
        cas[0].version,
        VersionChoice::Fixed(drm::simulcrypt::ProtocolVersion::V2)
    );
    assert_eq!(cas[1].version, VersionChoice::Auto);
    let e = &config.emmgs[0];
    assert_eq!(
        (e.ca_system_id(), e.emm_pid, e.bandwidth.bps()),
        (0x4AE2, 0x1F10, 64_000)
    );
    assert!(e.serves(&config.channels[0]));

    // Two CAS on one ECM PID or one Super_CAS_id, a bad version, an EMMG for a CAS no
    // channel carries, an EMM PID on an ECM PID: each named.
    let bad = format!(
        "{ISSUE_SHAPE}\n[channel.scrambling]\nkeys = \"simulcrypt\"\n\
         [[channel.scrambling.simulcrypt]]\necmg = \"127.0.0.1:4100\"\nsuper_cas_id = 0x4AD10000\necm_pid = 0x1F00\n\
         [[channel.scrambling.simulcrypt]]\necmg = \"127.0.0.1:4101\"\nsuper_cas_id = 0x4AD10000\necm_pid = 0x1F00\nprotocol_version = 4\n\
         [[emmg]]\nlisten = \"127.0.0.1:4200\"\nclient_id = 0x0B000000\nemm_pid = 0x1F20\n\
         [[emmg]]\nlisten = \"127.0.0.1:4201\"\nclient_id = 0x4AD10000\nemm_pid = 0x1F00\nbandwidth = \"20M\"\n"
    );
    let errors = reject(&bad);
    let first = reject(
        &bad.replace("protocol_version = 4\n", "")
            .replace("emm_pid = 0x1F00\nbandwidth = \"20M\"", "emm_pid = 0x1F00"),
    );
    assert!(message(
        &errors,
        "channel[0].scrambling.simulcrypt[1].protocol_version"
    )
    .contains("auto"));
    assert!(message(&errors, "emmg[1].bandwidth").contains("10M"));
    assert!(message(&first, "channel[0].scrambling.simulcrypt[1].ecm_pid").contains("0x1F00"));
    assert!(message(&first, "channel[0].scrambling.simulcrypt[1].super_cas_id").contains("twice"));
    let one_cas = reject(&format!(
        "{ISSUE_SHAPE}\n[channel.scrambling]\nkeys = \"simulcrypt\"\n\
         [[channel.scrambling.simulcrypt]]\necmg = \"127.0.0.1:4100\"\nsuper_cas_id = 0x4AD10000\necm_pid = 0x1F00\n\
         [[emmg]]\nlisten = \"127.0.0.1:4200\"\nclient_id = 0x0B000000\nemm_pid = 0x1F20\n\
         [[emmg]]\nlisten = \"127.0.0.1:4201\"\nclient_id = 0x4AD10000\nemm_pid = 0x1F00\n"
    ));
    assert!(message(&one_cas, "emmg[0].client_id").contains("0x0B00"));
    let greedy = reject(&format!(
        "{ISSUE_SHAPE}\n[channel.scrambling]\nkeys = \"simulcrypt\"\n\
         [[channel.scrambling.simulcrypt]]\necmg = \"127.0.0.1:4100\"\nsuper_cas_id = 0x4AD10000\n\
         [[emmg]]\nlisten = \"127.0.0.1:4200\"\nclient_id = 0x4AD10000\nemm_pid = 0x1F20\nbandwidth = \"2M\"\n"
    ));
    assert!(message(&greedy, "emmg[0].bandwidth").contains("quarter"));
    assert!(message(&one_cas, "emmg[1].emm_pid").contains("scrambling"));
}
