//! A RabbitMQ cluster with its MQTT plugin, started by a test from Debian's
//! rabbitmq-server (not its service): each node its own name, ports, data
//! and log directories, one Erlang cookie; durable MQTT subscriptions are
//! quorum queues, replicated on every node.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

pub struct Node {
    pub name: String,
    pub mqtt_port: u16,
    amqp_port: u16,
    dist_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    /// HOME for the nodes and rabbitmqctl: where the shared cookie is.
    home: tempfile::TempDir,
}

/// `n` distinct free ports: all held open until every one is chosen, so no
/// two nodes get the same one.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()).expect("port"))
        .collect()
}

impl Node {
    fn spawn(&mut self, home: &Path) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let conf = format!(
            "listeners.tcp.default = {}\nmqtt.listeners.tcp.default = {}\nmqtt.allow_anonymous = true\nmqtt.durable_queue_type = quorum\nloopback_users = none\nlog.file.level = warning\n",
            self.amqp_port, self.mqtt_port
        );
        std::fs::write(self.dir.join("rabbitmq.conf"), conf).expect("conf");
        std::fs::write(self.dir.join("enabled_plugins"), "[rabbitmq_mqtt].\n").expect("plugins");
        let out = std::fs::File::create(self.dir.join("out.log")).expect("log");
        let child = Command::new(SERVER)
            .env("HOME", home)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start rabbitmq-server (apt install rabbitmq-server)");
        self.child = Some(child);
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", self.mqtt_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not open its MQTT port; see {}",
                self.name,
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL to the Erlang VM: a node lost, not shut down.
    pub fn kill(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt_port)
    }
}

impl Cluster {
    /// `n` nodes, clustered; returns once every one takes MQTT connections.
    pub fn start(n: usize) -> Cluster {
        let home = tempfile::tempdir().expect("home");
        let cookie = home.path().join(".erlang.cookie");
        std::fs::write(&cookie, format!("posbridge{}", ulid::Ulid::new())).expect("cookie");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).expect("mode");
        let tag = format!("{}{}", std::process::id(), n);
        let ports = free_ports(3 * n);
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| {
                let dir = home.path().join(format!("node{i}"));
                std::fs::create_dir_all(&dir).expect("node dir");
                Node {
                    name: format!("pb{i}x{tag}@localhost"),
                    mqtt_port: ports[3 * i],
                    amqp_port: ports[3 * i + 1],
                    dist_port: ports[3 * i + 2],
                    dir,
                    child: None,
                }
            })
            .collect();
        for node in &mut nodes {
            node.spawn(home.path());
        }
        for node in &nodes {
            node.wait_up();
        }
        let c = Cluster { nodes, home };
        let first = c.nodes[0].name.clone();
        for node in c.nodes.iter().skip(1) {
            c.ctl(&node.name, &["stop_app"]);
            c.ctl(&node.name, &["join_cluster", &first]);
            c.ctl(&node.name, &["start_app"]);
            node.wait_up();
        }
        c
    }

    fn ctl(&self, node: &str, args: &[&str]) {
        let out = Command::new(CTL)
            .env("HOME", self.home.path())
            .arg("-n")
            .arg(node)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("rabbitmqctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}
