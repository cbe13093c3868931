//! A TLS front for a test portal. kubectl (client-go) sends credentials
//! only over TLS, as a production portal behind its HTTPS public URL is
//! reached; this terminates TLS on loopback with a certificate from a CA of
//! its own (made with openssl, as the stack's scripts make theirs) and
//! passes the bytes to the portal.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

pub struct TlsFront {
    /// `https://127.0.0.1:<port>`
    pub url: String,
    pub ca_pem: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect(
            "openssl is needed for the tests' TLS front (scripts/install-packages installs it)",
        );
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a serving certificate for 127.0.0.1 and localhost, made with
/// openssl in `dir`: `ca.crt`, `ca.key`, `tls.crt`, `tls.key`.
pub fn certificates(dir: &Path, ca_name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let subject = format!("/CN={ca_name}");
    let mut ca = vec![
        "req", "-x509", "-days", "1", "-subj", &subject, "-keyout", "ca.key", "-out", "ca.crt",
    ];
    ca.extend(ec);
    openssl(dir, &ca);
    let mut csr = vec![
        "req",
        "-new",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    ];
    csr.extend(ec);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "tls.crt",
        ],
    );
}

/// Serves TLS on a new loopback port, in front of `target` (`127.0.0.1:port`).
pub async fn start(target: String) -> TlsFront {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(super::cluster::unique("tls-front-"));
    certificates(&dir, "tenant-api-test-ca");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("tls.crt"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("tls.key")).unwrap();
    let ca_pem = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(&target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsFront { url, ca_pem }
}
