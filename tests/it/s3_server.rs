//! A real S3 server for the tests and the bench: s3s-fs (an S3 implementation over a
//! directory) on 127.0.0.1, in this process. Shared by `tests/it` and `tests/bench`.

#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use object_store::ObjectStoreExt;

pub const ACCESS_KEY: &str = "AKIAMSGCAPITEST";
pub const SECRET_KEY: &str = "s3-secret-key-5d41402abc4b2a76b9719d911017c592";

/// An S3 server on 127.0.0.1 serving `root` (a bucket is a directory, an object a file).
pub struct S3Server {
    pub url: String,
    pub root: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().expect("s3 root");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs");
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        S3Server { url, root, _rt: rt }
    }

    /// Creates a bucket (a directory).
    pub fn bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.path().join(name)).expect("bucket");
    }

    /// Puts an object (a file under its bucket).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let p = self.root.path().join(bucket).join(key);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dirs");
        std::fs::write(p, bytes).expect("put");
    }

    /// An object's bytes, `None` when there is none.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.path().join(bucket).join(key)).ok()
    }

    /// The credentials and endpoint every AWS tool reads.
    pub fn env_pairs(&self) -> [(&'static str, String); 5] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// [`S3Server::env_pairs`] set on a command.
    pub fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.envs(self.env_pairs())
    }

    /// A presigned GET URL for an object (plain http: the server is on loopback).
    pub fn presigned(&self, bucket: &str, key: &str) -> String {
        use object_store::signer::Signer;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_region("us-east-1")
            .with_endpoint(&self.url)
            .with_allow_http(true)
            .build()
            .expect("store");
        let path = object_store::path::Path::from(key);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let url = rt
            .block_on(store.signed_url(reqwest::Method::GET, &path, Duration::from_secs(3600)))
            .expect("presign");
        // The object really is there for the store's own client.
        rt.block_on(store.head(&path))
            .expect("presigned object exists");
        url.to_string()
    }
}
