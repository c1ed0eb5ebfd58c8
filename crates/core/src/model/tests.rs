use super::*;

#[test]
fn project_ids() {
    assert!(ProjectId::new("demo-1_A").is_ok());
    assert!(ProjectId::new("").is_err());
    assert!(ProjectId::new("a".repeat(65)).is_err());
    assert!(ProjectId::new("a/b").is_err());
    assert!(ProjectId::new("files").is_err());
}

#[test]
fn relative_paths() {
    for ok in ["a", "my_files/test.mp4", "a/b/c.d", "ünï/cödé.txt"] {
        assert!(validate_relative_path(ok, 255).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "/abs",
        "a/../b",
        "..",
        "./a",
        "a//b",
        "a/",
        "a\\b",
        "a\u{0}b",
        "a\nb",
        "%2e%2e/x",
        "a/%2E%2E/b",
        "a%2fb",
        "%252e%252e/x",
        "a%00b",
    ] {
        assert!(validate_relative_path(bad, 255).is_err(), "{bad:?}");
    }
    for bad in ["a/\u{FF0E}\u{FF0E}/b", "x/\u{2025}/y", "a\u{202E}b/c.txt"] {
        assert!(validate_relative_path(bad, 1024).is_err(), "{bad:?}");
    }
    assert!(validate_relative_path(&"a".repeat(256), 255).is_err());
    // 130 characters, 260 bytes: within 255 characters, too long for one file system name.
    let wide = "é".repeat(130);
    assert!(
        validate_relative_path(&format!("dir/{wide}"), 1024).is_err(),
        "a segment over 255 bytes"
    );
    assert!(validate_relative_path(&"é".repeat(100), 1024).is_ok());
}

#[test]
fn file_names() {
    for bad in [
        "C:\\Users\\me\\a.PNG",
        "../../etc/passwd",
        "/etc/passwd",
        "%2e%2e",
        "%2e%2e%2fx",
        "a%5cb",
        "a%00b",
        "%252e%252e%252fx",
        ".",
        "..",
    ] {
        assert!(FileName::new(bad).is_err(), "{bad:?}");
    }
    for ok in [
        "100%.txt",
        "50%25 off.pdf",
        "..hidden",
        "a..b.txt",
        "报告.pdf",
        "ｒéｓｕｍé.txt",
    ] {
        assert!(FileName::new(ok).is_ok(), "{ok:?}");
    }
    // Names that display as another (bidi controls) or become a path under NFKC.
    for bad in [
        "invoice\u{202E}fdp.exe",
        "a\u{2066}b.txt",
        "\u{200F}x.png",
        "\u{FF0E}\u{FF0E}",
        "\u{FF0E}\u{FF0E}\u{FF0F}etc",
        "\u{2025}",
        "a\u{FF0F}b.txt",
        "a\u{FF3C}b.txt",
        "a\u{FE68}b.txt",
    ] {
        assert!(FileName::new(bad).is_err(), "{bad:?}");
    }
    assert!(FileName::new("a\r\nb").is_err());
    assert!(FileName::new("a/b").is_err());
    assert!(FileName::new("x".repeat(256)).is_err());
    assert_eq!(FileName::new(".bashrc").map(|n| n.extension()).ok().flatten(), None);
    assert_eq!(
        FileName::new("archive.tar.gz")
            .map(|n| n.extension())
            .ok()
            .flatten()
            .as_deref(),
        Some("gz")
    );
}

#[test]
fn file_ids() {
    let id = FileId::generate();
    assert_eq!(FileId::parse(id.as_str()).ok(), Some(id));
    assert!(FileId::parse("../x").is_err());
    assert!(FileId::parse(&"A".repeat(32)).is_err());
}
