use super::*;

fn norm(path: &str) -> Result<String, Refused> {
    normalize(path, Options::default()).map(Cow::into_owned)
}

fn keep(path: &str) -> Result<String, Refused> {
    let options = Options {
        encoded_slashes: EncodedSlashes::Keep,
    };
    normalize(path, options).map(Cow::into_owned)
}

#[test]
fn normal_paths_are_borrowed() {
    for path in [
        "/",
        "/admin/x",
        "/admin/",
        "/a/b.c/d..e/.f/g.",
        "/v/%C3%A4.mp4",
        "/v/ä.mp4",
        "/q/a%20b%3Fc%25",
        "/files/a;b.txt",
        "/package.Service/Method",
    ] {
        assert!(
            matches!(normalize(path, Options::default()), Ok(Cow::Borrowed(p)) if p == path),
            "{path}"
        );
        assert!(is_normal(path, Options::default()), "{path}");
    }
}

#[test]
fn the_bypass_spellings_become_the_path_they_mean() {
    for (raw, want) in [
        ("/public/../admin/x", "/admin/x"),
        ("/public/%2e%2e/admin/x", "/admin/x"),
        ("/public/.%2e/admin/x", "/admin/x"),
        ("/public/%2E%2E/admin/x", "/admin/x"),
        ("//admin/x", "/admin/x"),
        ("/admin//x", "/admin/x"),
        ("///admin///x", "/admin/x"),
        ("/./admin/x", "/admin/x"),
        ("/%2E/admin/x", "/admin/x"),
        ("/%61dmin/x", "/admin/x"),
        ("/%41DMIN/x", "/ADMIN/x"),
        ("/a/b/../../admin/x", "/admin/x"),
        ("/admin/x/.", "/admin/x/"),
        ("/admin/x/..", "/admin/"),
        ("/admin/x/../", "/admin/"),
        ("/admin/.", "/admin/"),
        ("/..a/b", "/..a/b"),
        ("/%7euser/%7Efile", "/~user/~file"),
        ("/a%2db%5fc%2Ed", "/a-b_c.d"),
        ("/a%3fb%3Bc", "/a%3Fb%3Bc"),
        ("/v/%c3%a4", "/v/%C3%A4"),
        ("/a%20b", "/a%20b"),
        ("/a%25", "/a%25"),
        ("/a%252e%252e/b", "/a%252e%252e/b"),
    ] {
        assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
    }
}

#[test]
fn ambiguous_spellings_are_refused() {
    for (raw, why) in [
        ("/..", Refused::AboveRoot),
        ("/../admin/x", Refused::AboveRoot),
        ("/a/../../admin/x", Refused::AboveRoot),
        ("/%2e%2e/admin", Refused::AboveRoot),
        ("/public/..%2fadmin/x", Refused::EncodedSlash),
        ("/public%2f..%2fadmin/x", Refused::EncodedSlash),
        ("/admin%2Fx", Refused::EncodedSlash),
        ("/admin%5cx", Refused::EncodedSlash),
        ("/public\\..\\admin/x", Refused::Backslash),
        ("/admin\\x", Refused::Backslash),
        ("/admin%00.html", Refused::ControlByte),
        ("/admin%0a", Refused::ControlByte),
        ("/admin%7F", Refused::ControlByte),
        ("/admin\u{1}x", Refused::ControlByte),
        ("/public/..;/admin/x", Refused::DotParameter),
        ("/public/.;/admin/x", Refused::DotParameter),
        ("/public/..;jsessionid=1/admin/x", Refused::DotParameter),
        ("/public/%2e%2e;/admin/x", Refused::DotParameter),
        ("/;x/admin", Refused::DotParameter),
        ("/a/;/..", Refused::DotParameter),
        ("/a%", Refused::BadEscape),
        ("/a%2", Refused::BadEscape),
        ("/a%zz", Refused::BadEscape),
        ("/a%%41", Refused::BadEscape),
        ("/%C0%AF", Refused::BadUtf8),
        ("/%c0%ae%c0%ae/admin", Refused::BadUtf8),
        ("/%E0%80%AF", Refused::BadUtf8),
        ("/%ED%A0%80", Refused::BadUtf8),
        ("/%C3", Refused::BadUtf8),
        ("/%C3a", Refused::BadUtf8),
        ("/%A4", Refused::BadUtf8),
        ("/%FF", Refused::BadUtf8),
        ("*", Refused::NotAbsolute),
        ("admin/x", Refused::NotAbsolute),
        ("", Refused::NotAbsolute),
    ] {
        assert_eq!(norm(raw), Err(why), "{raw:?}");
    }
}

#[test]
fn keep_leaves_encoded_slashes_in_their_segment_but_never_hides_dot_segments() {
    assert_eq!(
        keep("/api/queues/%2f/orders").as_deref(),
        Ok("/api/queues/%2F/orders")
    );
    assert_eq!(keep("/a%5Cb").as_deref(), Ok("/a%5Cb"));
    for raw in [
        "/public/..%2fadmin/x",
        "/public%2f..%2fadmin/x",
        "/a%2F.%2Fb",
        "/a%5C..",
        "/%2e%2e%2fadmin",
    ] {
        assert_eq!(keep(raw), Err(Refused::EncodedDotSegment), "{raw}");
    }
    assert_eq!(
        with_decoded_slashes("/admin%2Fx").as_deref(),
        Some("/admin/x")
    );
    assert_eq!(
        with_decoded_slashes("/%2F%2Fadmin%5Cx").as_deref(),
        Some("/admin/x")
    );
    assert_eq!(with_decoded_slashes("/admin/x"), None);
}

#[test]
fn parameters_are_dropped_in_the_servlet_reading() {
    assert_eq!(
        without_parameters("/admin;x=1/y").as_deref(),
        Some("/admin/y")
    );
    assert_eq!(
        without_parameters("/app/page;jsessionid=A1").as_deref(),
        Some("/app/page")
    );
    assert_eq!(without_parameters("/a/b").as_deref(), None);
}

#[test]
fn normalizing_twice_changes_nothing() {
    for raw in [
        "/public/../admin/x",
        "//a//b/./c/../d/",
        "/%61%62/%7e/%c3%a4/%3b",
        "/a/b/..",
    ] {
        let once = norm(raw).unwrap();
        assert!(
            matches!(normalize(&once, Options::default()), Ok(Cow::Borrowed(_))),
            "{raw} -> {once}"
        );
        assert!(once.len() <= raw.len());
        assert!(is_normal(&once, Options::default()));
    }
}
