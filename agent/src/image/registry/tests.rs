//! Unit tests of registry access: auth files, bearer challenges, credential helpers.

use super::*;

#[test]
fn auth_files_docker_and_containers_formats() {
    let f: AuthFile = serde_json::from_str(
        r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"},
            "ghcr.io":{"auth":"Z2g6Z2hwdw=="},
            "ghcr.io/org":{"username":"org","password":"orgpw"},
            "localhost:5000":{"auth":"bm9jb2xvbg=="},
            "acr.example":{"auth":"MDAwMDo=","identitytoken":"refresh"}
        }}"#,
    )
    .unwrap();
    let basic = |u: &str, p: &str| Some(Secret::Auth(RegistryAuth::Basic(u.into(), p.into())));
    let eq = |a: Option<Secret>, b: Option<Secret>| a == b;
    assert_eq!(
        f.lookup("acr.example", "x"),
        Some(Secret::IdentityToken("refresh".into()))
    );
    assert!(!format!("{:?}", f.lookup("acr.example", "x")).contains("refresh"));
    assert!(eq(
        f.lookup("docker.io", "library/x"),
        basic("hub", "hubpw")
    ));
    assert!(eq(f.lookup("ghcr.io", "other/x"), basic("gh", "ghpw")));
    assert!(eq(f.lookup("ghcr.io", "org/x"), basic("org", "orgpw")));
    assert!(eq(
        f.lookup("ghcr.io", "organisation/x"),
        basic("gh", "ghpw")
    ));
    // "nocolon" has no user:password separator
    assert!(f.lookup("localhost:5000", "x").is_none());
    assert!(f.lookup("quay.io", "x").is_none());
}

#[test]
fn bearer_challenges() {
    assert_eq!(
        bearer_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg.example",scope="x""#
        ),
        Some((
            "https://auth.example/token".into(),
            Some("reg.example".into())
        ))
    );
    assert_eq!(
        bearer_challenge(r#"Basic realm="x", Bearer realm="https://a/t""#),
        Some(("https://a/t".into(), None))
    );
    assert_eq!(bearer_challenge(r#"Basic realm="registry""#), None);
    assert_eq!(bearer_challenge("Bearer service=x"), None);
}

#[test]
fn helper_precedence_is_dockers() {
    let f: AuthFile = serde_json::from_str(
        r#"{"auths":{"reg.example:5000":{"auth":"dTpw"},"plain.example":{"auth":"dTpw"}},
            "credHelpers":{"reg.example:5000":"foo","https://index.docker.io/v1/":"hub",
                           "nohelper.example":""},
            "credsStore":"store"}"#,
    )
    .unwrap();
    // credHelpers beats auths and credsStore; Docker Hub's legacy key is normalised
    assert_eq!(
        f.source("reg.example:5000", "x"),
        Some(Source::Helper("foo"))
    );
    assert_eq!(
        f.source("docker.io", "library/x"),
        Some(Source::Helper("hub"))
    );
    // credsStore beats auths (Docker keeps no secrets in auths when a store is set)
    assert_eq!(
        f.source("plain.example", "x"),
        Some(Source::Helper("store"))
    );
    assert_eq!(f.source("quay.io", "x"), Some(Source::Helper("store")));
    // the port is part of the key
    assert_eq!(f.source("reg.example", "x"), Some(Source::Helper("store")));
    // an empty helper name means the file's own auths, as in Docker
    assert_eq!(f.source("nohelper.example", "x"), None);

    let f: AuthFile = serde_json::from_str(
        r#"{"auths":{"plain.example":{"auth":"dTpw"}},"credHelpers":{"reg.example:5000":"foo"}}"#,
    )
    .unwrap();
    assert_eq!(
        f.source("plain.example", "x"),
        Some(Source::Inline(Secret::Auth(RegistryAuth::Basic(
            "u".into(),
            "p".into()
        ))))
    );
    assert_eq!(
        f.source("reg.example:5000", "x"),
        Some(Source::Helper("foo"))
    );
    assert_eq!(f.source("quay.io", "x"), None);
    assert_eq!(helper_server("docker.io"), "https://index.docker.io/v1/");
    assert_eq!(helper_server("reg.example:5000"), "reg.example:5000");
}

#[tokio::test]
async fn credentials_through_helpers_and_files() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    credhelper::tests::helper(
        &bin,
        "good",
        r#"read -r s; [ "$s" = reg.example:5000 ] || exit 9; echo '{"ServerURL":"reg.example:5000","Username":"hu","Secret":"hp"}'"#,
    );
    credhelper::tests::helper(
        &bin,
        "empty",
        "echo 'credentials not found in native keychain'; exit 1",
    );
    credhelper::tests::helper(&bin, "broken", "echo 'keyring is locked' >&2; exit 1");
    let write = |n: &str, s: &str| {
        let p = d.path().join(n);
        std::fs::write(&p, s).unwrap();
        p
    };
    let a = write(
        "a.json",
        r#"{"credHelpers":{"reg.example:5000":"empty","other.example":"broken"}}"#,
    );
    let b = write(
        "b.json",
        r#"{"auths":{"reg.example:5000":{"auth":"dTpw"}},"credsStore":"good"}"#,
    );
    let c = write(
        "c.json",
        r#"{"auths":{"reg.example:5000":{"auth":"dTpw"}}}"#,
    );
    let cfg = |files: Vec<PathBuf>| RegistryConfig {
        auth_files: files,
        credential_helper_dirs: vec![bin.clone()],
        ..Default::default()
    };
    // a.json's helper has nothing: on to b.json, whose credsStore wins over its auths
    let (auth, from) = cfg(vec![a.clone(), b.clone()])
        .credentials("reg.example:5000", "x")
        .await
        .unwrap();
    assert_eq!(
        auth,
        Secret::Auth(RegistryAuth::Basic("hu".into(), "hp".into()))
    );
    assert_eq!(
        from,
        Credentials::Helper("docker-credential-good".into(), b.clone())
    );
    assert!(from.to_string().contains("docker-credential-good"));
    // nothing anywhere: anonymous
    let (auth, from) = cfg(vec![a.clone()])
        .credentials("reg.example:5000", "x")
        .await
        .unwrap();
    assert_eq!(
        (auth, from),
        (Secret::Auth(RegistryAuth::Anonymous), Credentials::None)
    );
    // inline credentials still work
    let (auth, from) = cfg(vec![a.clone(), c.clone()])
        .credentials("reg.example:5000", "x")
        .await
        .unwrap();
    assert_eq!(
        auth,
        Secret::Auth(RegistryAuth::Basic("u".into(), "p".into()))
    );
    assert_eq!(from, Credentials::File(c.clone()));
    // a failing helper is an error, not a silent anonymous pull
    let e = cfg(vec![a.clone(), c.clone()])
        .credentials("other.example", "x")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("docker-credential-broken failed for registry other.example")
            && e.contains("keyring is locked"),
        "{e}"
    );
}
