//! The CA issues only for ECDSA P-256 keys, judged by the key itself (openssl makes the CSRs,
//! including a P-384 key signed with SHA-256 that the signature algorithm alone mislabels).

use std::process::Command;

use serde_json::json;
use x509_parser::prelude::*;

use crate::support::start;

/// A CSR for CN = SAN = `name` from `openssl req` with `key_args` (e.g. `-newkey ec ...`).
fn openssl_csr(name: &str, key_args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-subj", &format!("/CN={name}"), "-addext", &format!("subjectAltName=DNS:{name}")])
        .args(["-keyout", &dir.path().join("k.pem").display().to_string()])
        .args(key_args)
        .output()
        .unwrap_or_else(|e| panic!("running openssl failed ({e}); install it: apt-get install openssl"));
    assert!(out.status.success(), "openssl req {key_args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn only_p256_keys_are_issued_whatever_the_signature_says() {
    let (_db, _pki, api) = start(&[]).await;
    let (id, credential) = api.register("node-k").await;
    let job = api.first_job(&id, &credential).await;
    let submit = |csr_pem: String| {
        let body = json!({"job_id": job["id"], "certificate_id": job["certificate_id"], "csr_pem": csr_pem});
        let path = format!("/agents/{id}/csr");
        let api = &api;
        let credential = credential.clone();
        async move { api.request(reqwest::Method::POST, &path, Some(body), Some(&credential)).await }
    };
    let refused = [
        ("P-384 key signed with SHA-256", vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-sha256"], "ec p-384"),
        ("P-384 key signed with SHA-384", vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-sha384"], "ec p-384"),
        ("RSA 2048", vec!["-newkey", "rsa:2048", "-sha256"], "rsa"),
        ("Ed25519", vec!["-newkey", "ed25519"], "ed25519"),
        ("P-256 key signed with SHA-384", vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha384"], "ecdsa-with-sha384"),
    ];
    for (what, args, named) in refused {
        let (status, body) = submit(openssl_csr("node-k", &args)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_csr")), "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap().to_ascii_lowercase();
        assert!(
            message.contains("only ecdsa p-256 keys") && message.contains(named),
            "{what}: the reason names the key and the rule: {message}"
        );
    }
    let (_, cert) = api.get(&format!("/certificates/{}", job["certificate_id"].as_str().unwrap())).await;
    assert_eq!(cert["status"], "pending", "nothing was issued: {cert}");

    let args = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha256"];
    let (status, body) = submit(openssl_csr("node-k", &args)).await;
    assert_eq!(status, 202, "P-256 with SHA-256 is issued: {body}");
    let (_, cert) = api.get(&format!("/certificates/{}", job["certificate_id"].as_str().unwrap())).await;
    let (_, pem) = parse_x509_pem(cert["certificate_pem"].as_str().unwrap().as_bytes()).unwrap();
    let leaf = pem.parse_x509().unwrap();
    let curve = leaf.public_key().algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
    assert_eq!(curve.as_deref(), Some("1.2.840.10045.3.1.7"), "the issued key is P-256");
}
