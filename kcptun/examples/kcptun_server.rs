//! A kcptun server: takes KCP sessions on `--listen` (UDP), each a smux session whose streams
//! are TCP connections to `--target`. Takes kcptun's flags; the client must run with
//! `--crypt none --datashard 0 --parityshard 0 --nocomp` (and the same `--smuxver`, `--mode`,
//! `--mtu`).
//!
//! ```sh
//! cargo run --release -p smux-kcptun --example kcptun_server -- -l 127.0.0.1:29900 -t 127.0.0.1:8080 --crypt none --datashard 0 --parityshard 0 --nocomp
//! kcptun-client -l 127.0.0.1:12948 -r 127.0.0.1:29900 --crypt none --datashard 0 --parityshard 0 --nocomp
//! ```

use smux_kcptun::tunnel::{run_server, Options, Role};

#[tokio::main]
async fn main() {
    let options = match Options::parse(Role::Server, std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kcptun_server: {e}");
            std::process::exit(2);
        }
    };
    eprintln!(
        "kcptun_server: listening on {} (UDP), target {} (TCP), smux {:?}, {:?}",
        options.listen, options.target, options.mux.version, options.kcp
    );
    if let Err(e) = run_server(options).await {
        eprintln!("kcptun_server: {e}");
        std::process::exit(1);
    }
}
