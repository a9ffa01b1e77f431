//! mosquitto as a comparison broker (benchmarks) and an external broker (tests): started on a
//! free loopback port with a temporary config, stopped on drop.

use crate::HarnessError;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running mosquitto.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    _dir: tempfile::TempDir,
    _tls_files: Option<tempfile::TempDir>,
    /// Its listener.
    pub addr: SocketAddr,
}

impl Mosquitto {
    /// Starts mosquitto with persistence on (as a production broker would run). If another
    /// process took the chosen port first (mosquitto then exits), starts again on another.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(|_| Ok("allow_anonymous true\n".to_owned()), "")
    }

    /// [`Self::start_secured`] on a TLS listener: the broker's certificate and key `server`,
    /// and every client must also show a certificate signed by `ca` (and log in).
    pub fn start_secured_tls(
        users: &[(&str, &str)],
        acl: &std::path::Path,
        ca: &std::path::Path,
        server: (&std::path::Path, &std::path::Path),
    ) -> Result<Self, HarnessError> {
        // Run as root, mosquitto reads its TLS files after dropping to the `mosquitto` user:
        // give it copies it can read (test keys only).
        let files = tempfile::tempdir().map_err(|e| HarnessError::io("temp dir", e))?;
        let readable = |from: &std::path::Path, name: &str| {
            let to = files.path().join(name);
            std::fs::copy(from, &to).map_err(|e| HarnessError::io("copying a TLS file", e))?;
            set_mode(&to, 0o644)?;
            Ok::<_, HarnessError>(to)
        };
        let (ca, cert, key) = (
            readable(ca, "ca.crt")?,
            readable(server.0, "server.crt")?,
            readable(server.1, "server.key")?,
        );
        set_mode(files.path(), 0o755)?;
        let tls = format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username false\n",
            ca.display(),
            cert.display(),
            key.display()
        );
        let mut broker = Self::start_with(|dir| secured(dir, users, acl), &tls)?;
        broker._tls_files = Some(files);
        Ok(broker)
    }

    /// Starts mosquitto as `gateway/deploy/mosquitto/mosquitto.conf` configures it: logins
    /// required (`users`: username and password, stored with `mosquitto_passwd`), client ID =
    /// username, and the ACL file `acl`.
    pub fn start_secured(
        users: &[(&str, &str)],
        acl: &std::path::Path,
    ) -> Result<Self, HarnessError> {
        Self::start_with(|dir| secured(dir, users, acl), "")
    }

    /// Starts mosquitto with the security lines `security(dir)` returns (`dir`: its temporary
    /// directory).
    fn start_with(
        security: impl Fn(&std::path::Path) -> Result<String, HarnessError>,
        listener: &str,
    ) -> Result<Self, HarnessError> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            if let Some(broker) = Self::try_start(&security, listener)? {
                return Ok(broker);
            }
        }
        Err(HarnessError::setup(format!(
            "mosquitto exited at start {ATTEMPTS} times (each chosen port in use?)"
        )))
    }

    fn try_start(
        security: &impl Fn(&std::path::Path) -> Result<String, HarnessError>,
        listener: &str,
    ) -> Result<Option<Self>, HarnessError> {
        let dir = tempfile::tempdir().map_err(|e| HarnessError::io("temp dir", e))?;
        let port = crate::ports::free_ports(1)?[0];
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let conf = dir.path().join("mosquitto.conf");
        let text = format!(
            "per_listener_settings false\n{}listener {port} 127.0.0.1\n{listener}persistence true\npersistence_location {}/\n\
             max_queued_messages 1000000\nmax_inflight_messages 1000\nlog_dest stderr\nlog_type error\n",
            security(dir.path())?,
            dir.path().display()
        );
        std::fs::write(&conf, text).map_err(|e| HarnessError::io("writing mosquitto.conf", e))?;
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                HarnessError::setup(format!(
                    "mosquitto could not be started ({e}); install it with `apt-get install mosquitto` \
                     (tests/install-prerequisites does this)"
                ))
            })?;
        let mut exited = || {
            child
                .try_wait()
                .map(|status| status.is_some())
                .map_err(|e| HarnessError::io("waiting for mosquitto", e))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !crate::ports::accepts(addr, Duration::from_secs(1)) {
            if exited()? {
                return Ok(None);
            }
            if Instant::now() > deadline {
                return Err(HarnessError::setup("mosquitto did not listen within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whoever answered, mosquitto exits right after a failed bind: still running a moment
        // later means the listener is ours.
        std::thread::sleep(Duration::from_millis(100));
        if exited()? {
            return Ok(None);
        }
        Ok(Some(Self {
            child,
            _dir: dir,
            _tls_files: None,
            addr,
        }))
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The security lines of a broker where `users` must log in, client ID = username, with the
/// ACL file `acl` (`dir`: the broker's temporary directory, for its password file).
fn secured(
    dir: &std::path::Path,
    users: &[(&str, &str)],
    acl: &std::path::Path,
) -> Result<String, HarnessError> {
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, "").map_err(|e| HarnessError::io("creating passwd", e))?;
    for (user, password) in users {
        let status = Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&passwd)
            .arg(user)
            .arg(password)
            .status()
            .map_err(|e| {
                HarnessError::setup(format!(
                    "mosquitto_passwd could not be run ({e}); it comes with `apt-get install mosquitto`"
                ))
            })?;
        if !status.success() {
            return Err(HarnessError::setup(format!(
                "mosquitto_passwd failed for {user}"
            )));
        }
    }
    Ok(format!(
        "allow_anonymous false\npassword_file {}\nacl_file {}\nuse_username_as_clientid true\n",
        passwd.display(),
        acl.display()
    ))
}

fn set_mode(path: &std::path::Path, mode: u32) -> Result<(), HarnessError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| HarnessError::io("setting permissions", e))
}
