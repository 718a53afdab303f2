use std::process::Command;
use std::sync::{Arc, Barrier};

use der::oid::AssociatedOid;
use der::Encode as _;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
    SubjectKeyIdentifier,
};

use super::*;
use crate::identity::svid_key::SvidKey;

fn td(name: &str) -> TrustDomain {
    TrustDomain::parse(name).expect("trust domain")
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).expect("id")
}

/// The one extension of type `T` in `cert`, decoded, with its critical flag.
fn extension<T: AssociatedOid + for<'a> der::Decode<'a>>(cert: &Certificate) -> (T, bool) {
    let mut found = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == T::OID);
    let e = found.next().expect("extension present");
    assert!(found.next().is_none(), "extension {} twice", T::OID);
    (
        T::from_der(e.extn_value.as_bytes()).expect("extension decodes"),
        e.critical,
    )
}

fn pem(der: &[u8]) -> String {
    Certificate::from_der(der)
        .expect("cert")
        .to_pem(LineEnding::LF)
        .expect("pem")
}

/// Runs `openssl verify` with `args`, the bundle and the leaf; (success, output).
fn openssl_verify(args: &[&str], bundle_pem: &str, leaf_der: &[u8]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("bundle.pem");
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&bundle, bundle_pem).expect("write bundle");
    std::fs::write(&leaf, pem(leaf_der)).expect("write leaf");
    let out = match Command::new("openssl")
        .arg("verify")
        .args(args)
        .arg("-CAfile")
        .arg(&bundle)
        .arg(&leaf)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("openssl is missing; hack/setup installs it")
        }
        Err(e) => panic!("running openssl: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim_end().to_string())
}

#[test]
fn test_authority_x509_svid_has_the_standard_profile() {
    let authority = IdentityAuthority::ephemeral(&td("zones.test"));
    let key = SvidKey::generate();
    let svid_id = id("spiffe://zones.test/zone/web");
    let before = SystemTime::now();
    let issued = authority
        .issue_x509_svid(&svid_id, &key.public_key_der(), Duration::from_secs(3600))
        .expect("issued");
    let cert = Certificate::from_der(&issued.cert_der).expect("leaf");
    let ca = Certificate::from_der(&authority.x509_bundle()[0]).expect("ca");
    let tbs = &cert.tbs_certificate;

    let (san, san_critical) = extension::<SubjectAltName>(&cert);
    assert_eq!(san.0.len(), 1, "exactly one SAN");
    assert_eq!(
        svid_x509::uri_sans(&cert).expect("sans"),
        vec!["spiffe://zones.test/zone/web".to_string()]
    );
    assert!(tbs.subject.0.is_empty(), "empty subject");
    assert!(
        san_critical,
        "the SAN is critical when the subject is empty"
    );
    let (bc, bc_critical) = extension::<BasicConstraints>(&cert);
    assert!(!bc.ca && bc_critical);
    let (ku, ku_critical) = extension::<KeyUsage>(&cert);
    assert_eq!(ku, KeyUsage(KeyUsages::DigitalSignature.into()));
    assert!(!ku.key_cert_sign() && !ku.crl_sign());
    assert!(ku_critical);
    let (eku, _) = extension::<ExtendedKeyUsage>(&cert);
    assert_eq!(
        eku.0,
        vec![build::ID_KP_SERVER_AUTH, build::ID_KP_CLIENT_AUTH]
    );
    let (ski, _) = extension::<SubjectKeyIdentifier>(&cert);
    assert_eq!(
        ski.0,
        crate::cert_parts::key_identifier(&tbs.subject_public_key_info).expect("ski")
    );
    let (aki, _) = extension::<AuthorityKeyIdentifier>(&cert);
    let (ca_ski, _) = extension::<SubjectKeyIdentifier>(&ca);
    assert_eq!(aki.key_identifier, Some(ca_ski.0));
    assert_eq!(tbs.issuer, ca.tbs_certificate.subject);
    assert!(crate::chain::check_signature(
        &cert,
        &p256::ecdsa::VerifyingKey::from_sec1_bytes(
            ca.tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes()
        )
        .expect("ca key")
    )
    .is_ok());

    // Validity: now-60s .. now+ttl, in whole seconds.
    let after = SystemTime::now();
    let nb = unix_secs(issued.not_before);
    let na = unix_secs(issued.not_after);
    assert!(
        nb + 60 >= unix_secs(before) && nb + 60 <= unix_secs(after),
        "{nb}"
    );
    assert!(
        na >= unix_secs(before) + 3600 && na <= unix_secs(after) + 3600,
        "{na}"
    );
    assert_eq!(issued.not_before, tbs.validity.not_before.to_system_time());
    assert_eq!(issued.not_after, tbs.validity.not_after.to_system_time());
    assert!(matches!(
        tbs.validity.not_after,
        x509_cert::time::Time::UtcTime(_)
    ));
    // Serial: 16 random bytes, positive.
    assert_eq!(issued.serial_hex.len(), 32);
    assert!(tbs.serial_number.as_bytes()[0] < 0x80);
    let summary = svid_x509::summarize(&issued.cert_der).expect("summary");
    assert_eq!(summary.serial_hex, issued.serial_hex);
    assert_eq!(
        (summary.not_before, summary.not_after),
        (issued.not_before, issued.not_after)
    );
    // The agent's check: the leaf certifies exactly the key it generated.
    assert_eq!(
        svid_x509::leaf_public_key(&issued.cert_der).expect("spki"),
        key.public_key_der()
    );
    let again = authority
        .issue_x509_svid(&svid_id, &key.public_key_der(), Duration::from_secs(3600))
        .expect("again");
    assert_ne!(again.serial_hex, issued.serial_hex);
}

#[test]
fn test_authority_ca_certificate_profile() {
    let authority = IdentityAuthority::ephemeral(&td("zones.test"));
    let ca = Certificate::from_der(&authority.x509_bundle()[0]).expect("ca");
    assert_eq!(authority.x509_bundle().len(), 1);
    assert_eq!(
        svid_x509::uri_sans(&ca).expect("sans"),
        vec!["spiffe://zones.test".to_string()]
    );
    let (bc, critical) = extension::<BasicConstraints>(&ca);
    assert!(bc.ca && critical);
    assert_eq!(bc.path_len_constraint, Some(0));
    let (ku, critical) = extension::<KeyUsage>(&ca);
    assert_eq!(ku.0, KeyUsages::KeyCertSign | KeyUsages::CRLSign);
    assert!(critical);
    extension::<SubjectKeyIdentifier>(&ca);
    let subject = ca.tbs_certificate.subject.to_string();
    assert!(
        subject.contains("Zones identity authority zones.test"),
        "{subject}"
    );
    assert_eq!(ca.tbs_certificate.issuer, ca.tbs_certificate.subject);
    let v = &ca.tbs_certificate.validity;
    let life = v
        .not_after
        .to_system_time()
        .duration_since(v.not_before.to_system_time())
        .expect("ordered");
    assert_eq!(life, CA_VALIDITY + CLOCK_SKEW);
    // A leaf never outlives its CA.
    let issued = authority
        .issue_x509_svid(
            &id("spiffe://zones.test/long"),
            &SvidKey::generate().public_key_der(),
            CA_VALIDITY * 2,
        )
        .expect("issued");
    assert_eq!(issued.not_after, v.not_after.to_system_time());
}

#[test]
fn test_authority_chain_verifies_with_openssl() {
    let authority = IdentityAuthority::ephemeral(&td("zones.test"));
    let bundle = authority.x509_bundle_pem().expect("bundle");
    let issued = authority
        .issue_x509_svid(
            &id("spiffe://zones.test/zone/web"),
            &SvidKey::generate().public_key_der(),
            Duration::from_secs(600),
        )
        .expect("issued");
    for args in [
        &[][..],
        &["-x509_strict"][..],
        &["-x509_strict", "-purpose", "sslclient"][..],
        &["-x509_strict", "-purpose", "sslserver"][..],
    ] {
        let (ok, out) = openssl_verify(args, &bundle, &issued.cert_der);
        assert!(
            ok && out.ends_with(": OK"),
            "openssl verify {args:?}: {out}"
        );
    }
    // Control: another authority's bundle does not verify this leaf.
    let other = IdentityAuthority::ephemeral(&td("zones.test"));
    let (ok, out) = openssl_verify(
        &[],
        &other.x509_bundle_pem().expect("pem"),
        &issued.cert_der,
    );
    assert!(!ok && !out.ends_with(": OK"), "{out}");
}

#[test]
fn test_authority_refuses_bad_requests() {
    let authority = IdentityAuthority::ephemeral(&td("zones.test"));
    let key = SvidKey::generate().public_key_der();
    let ttl = Duration::from_secs(60);
    let foreign = id("spiffe://other.test/zone/web");
    let e = authority
        .issue_x509_svid(&foreign, &key, ttl)
        .expect_err("foreign");
    assert_eq!(
        e.to_string(),
        "spiffe://other.test/zone/web is not in trust domain zones.test"
    );
    assert!(matches!(
        authority.mint_jwt_svid(&foreign, &["db".into()], ttl),
        Err(AuthorityError::ForeignId { .. })
    ));
    let web = id("spiffe://zones.test/zone/web");
    let rsa = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&[0xc5; 256]), 65537u32.into())
        .expect("rsa");
    let rsa_spki = rsa::pkcs8::EncodePublicKey::to_public_key_der(&rsa).expect("der");
    let ed25519_spki = [
        hex::decode("302a300506032b6570032100").expect("hex"),
        vec![7; 32],
    ]
    .concat();
    let mut trailing = key.clone();
    trailing.push(0);
    let mut off_curve = key.clone();
    let last = off_curve.len() - 1;
    off_curve[last] ^= 1;
    for (what, bad) in [
        ("rsa", rsa_spki.as_bytes().to_vec()),
        ("ed25519", ed25519_spki),
        ("garbage", b"garbage".to_vec()),
        ("empty", Vec::new()),
        ("trailing", trailing),
        ("off curve", off_curve),
    ] {
        let e = authority.issue_x509_svid(&web, &bad, ttl).expect_err(what);
        assert!(matches!(e, AuthorityError::PublicKey(_)), "{what}: {e}");
    }
    assert!(matches!(
        authority.issue_x509_svid(&web, &key, Duration::ZERO),
        Err(AuthorityError::Ttl(_))
    ));
    assert!(matches!(
        authority.mint_jwt_svid(&web, &[], ttl),
        Err(AuthorityError::Audience(_))
    ));
    assert!(matches!(
        authority.mint_jwt_svid(&web, &["db".into(), String::new()], ttl),
        Err(AuthorityError::Audience(_))
    ));
    assert!(matches!(
        authority.mint_jwt_svid(&web, &["db".into()], Duration::from_millis(500)),
        Err(AuthorityError::Ttl(_))
    ));
}

#[test]
fn test_authority_jwt_svid_validates_against_its_bundle() {
    let authority = IdentityAuthority::ephemeral(&td("zones.test"));
    let web = id("spiffe://zones.test/zone/web");
    let token = authority
        .mint_jwt_svid(
            &web,
            &["db".into(), "cache".into()],
            Duration::from_secs(300),
        )
        .expect("minted");
    let bundle = authority.jwt_bundle();
    let (got, claims) =
        jwt::validate_jwt_svid(&token, bundle.as_bytes(), "cache", SystemTime::now())
            .expect("valid");
    assert_eq!(got, web);
    let (iat, exp) = (
        claims["iat"].as_u64().expect("iat"),
        claims["exp"].as_u64().expect("exp"),
    );
    assert_eq!(exp - iat, 300);
    assert!(iat.abs_diff(unix_secs(SystemTime::now())) <= 2);
    let set: serde_json::Value = serde_json::from_str(&bundle).expect("json");
    assert_eq!(set["keys"].as_array().expect("keys").len(), 1);
    assert_eq!(set["keys"][0]["kid"], authority.jwt_key_id());
    assert_eq!(
        authority.jwt_key_id(),
        jwt::key_id(authority.jwt_key.verifying_key())
    );
    let later = SystemTime::now() + Duration::from_secs(301);
    assert!(matches!(
        jwt::validate_jwt_svid(&token, bundle.as_bytes(), "db", later),
        Err(jwt::JwtError::Expired { .. })
    ));
    let other = IdentityAuthority::ephemeral(&td("zones.test"));
    assert!(matches!(
        jwt::validate_jwt_svid(
            &token,
            other.jwt_bundle().as_bytes(),
            "db",
            SystemTime::now()
        ),
        Err(jwt::JwtError::UnknownKid(_))
    ));
}

#[test]
fn test_authority_files_are_created_once_and_reloaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("identity");
    let a = IdentityAuthority::open_or_create(&root, &td("zones.test")).expect("create");
    let home = root.join("zones.test");
    assert_eq!(a.home(), Some(home.as_path()));
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode(&home.join(JWT_KEY_FILE)), 0o600);
    let b = IdentityAuthority::open_or_create(&root, &td("zones.test")).expect("reopen");
    assert_eq!(a.x509_bundle(), b.x509_bundle());
    assert_eq!(a.jwt_bundle(), b.jwt_bundle());
    let bundle_pem = std::fs::read_to_string(home.join(X509_BUNDLE_FILE)).expect("bundle");
    assert_eq!(bundle_pem, a.x509_bundle_pem().expect("pem"));
    assert_eq!(
        std::fs::read_to_string(home.join(JWT_BUNDLE_FILE)).expect("jwt bundle"),
        a.jwt_bundle()
    );
    // What b issues verifies against what a published.
    let issued = b
        .issue_x509_svid(
            &id("spiffe://zones.test/z"),
            &SvidKey::generate().public_key_der(),
            Duration::from_secs(60),
        )
        .expect("issued");
    let (ok, out) = openssl_verify(&[], &bundle_pem, &issued.cert_der);
    assert!(ok, "{out}");
    // Another trust domain gets its own directory and CA.
    let c = IdentityAuthority::open_or_create(&root, &td("other.test")).expect("other");
    assert_ne!(c.x509_bundle(), a.x509_bundle());
    let names: Vec<String> = std::fs::read_dir(&root)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary directories left: {names:?}");
    let debug = format!("{a:?}");
    assert!(
        !debug.contains(&hex::encode(a.ca_key.to_bytes())),
        "{debug}"
    );
    assert!(
        !debug.contains(&hex::encode(a.jwt_key.to_bytes())),
        "{debug}"
    );
}

/// Copies `from`'s authority files into a new directory `to`.
fn copy_home(from: &Path, to: &Path) {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(to)
        .expect("mkdir");
    for f in [
        CA_KEY_FILE,
        CA_CERT_FILE,
        JWT_KEY_FILE,
        X509_BUNDLE_FILE,
        JWT_BUNDLE_FILE,
    ] {
        std::fs::copy(from.join(f), to.join(f)).expect("copy");
    }
}

#[test]
fn test_authority_refuses_foreign_or_mismatched_files_naming_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    IdentityAuthority::open_or_create(root, &td("zones.test")).expect("create");
    let good = root.join("zones.test");

    // zones.test's files under another trust domain's name.
    copy_home(&good, &root.join("other.test"));
    let e = IdentityAuthority::open_or_create(root, &td("other.test")).expect_err("foreign");
    assert!(
        matches!(e, AuthorityError::CertTrustDomain { ref found, .. } if found == &["spiffe://zones.test".to_string()]),
        "{e}"
    );
    let cert_file = root.join("other.test").join(CA_CERT_FILE);
    assert!(
        e.to_string().contains(&cert_file.display().to_string()),
        "{e}"
    );
    // The foreign files are left as they were.
    assert_eq!(
        std::fs::read(&cert_file).expect("cert"),
        std::fs::read(good.join(CA_CERT_FILE)).expect("cert")
    );

    let case = |file: &str, contents: &[u8], mode: u32| -> (AuthorityError, PathBuf) {
        let scratch = tempfile::tempdir_in(root).expect("scratch");
        let home = scratch.path().join("zones.test");
        copy_home(&good, &home);
        let path = home.join(file);
        std::fs::remove_file(&path).expect("rm");
        if !contents.is_empty() {
            write_new(&path, contents, mode).expect("write");
        }
        let e =
            IdentityAuthority::open_or_create(scratch.path(), &td("zones.test")).expect_err(file);
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        (e, path)
    };
    let other_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .expect("pem");
    let (e, _) = case(CA_KEY_FILE, other_key.as_bytes(), 0o600);
    assert!(matches!(e, AuthorityError::CertKey { .. }), "{e}");
    let (e, _) = case(CA_KEY_FILE, b"not a key", 0o600);
    assert!(matches!(e, AuthorityError::KeyFormat(_)), "{e}");
    let key_pem = std::fs::read(good.join(CA_KEY_FILE)).expect("key");
    let (e, _) = case(CA_KEY_FILE, &key_pem, 0o644);
    assert!(matches!(e, AuthorityError::KeyPermissions(_, 0o644)), "{e}");
    let (e, _) = case(CA_CERT_FILE, b"-----BEGIN CERTIFICATE-----\nAAAA\n", 0o644);
    assert!(matches!(e, AuthorityError::CertFormat(_)), "{e}");
    let (e, _) = case(JWT_KEY_FILE, b"", 0);
    assert!(matches!(e, AuthorityError::Io(..)), "{e}");
    let other = IdentityAuthority::ephemeral(&td("zones.test"));
    let (e, _) = case(
        X509_BUNDLE_FILE,
        other.x509_bundle_pem().expect("pem").as_bytes(),
        0o644,
    );
    assert!(matches!(e, AuthorityError::BundleMismatch(..)), "{e}");
    let (e, _) = case(JWT_BUNDLE_FILE, other.jwt_bundle().as_bytes(), 0o644);
    assert!(matches!(e, AuthorityError::BundleMismatch(..)), "{e}");
    let (e, _) = case(JWT_BUNDLE_FILE, b"{", 0o644);
    assert!(matches!(e, AuthorityError::BundleMismatch(..)), "{e}");
    // The original is untouched and still opens.
    IdentityAuthority::open_or_create(root, &td("zones.test")).expect("original");
}

#[test]
fn test_authority_concurrent_creation_agrees_on_one_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Arc::new(dir.path().join("identity"));
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (root, barrier) = (Arc::clone(&root), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let a = IdentityAuthority::open_or_create(&root, &td("zones.test"))
                    .expect("open_or_create");
                (a.x509_bundle(), a.jwt_bundle())
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
    let on_disk = IdentityAuthority::open_or_create(&root, &td("zones.test")).expect("reopen");
    assert_eq!(on_disk.x509_bundle(), results[0].0);
    let names: Vec<_> = std::fs::read_dir(&*root)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("zones.test")]);
}

#[test]
fn test_authority_ca_der_round_trips() {
    let a = IdentityAuthority::ephemeral(&td("zones.test"));
    assert_eq!(a.ca_cert.to_der().expect("der"), a.x509_bundle()[0]);
    assert!(a.home().is_none());
}
