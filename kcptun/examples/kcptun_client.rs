//! A kcptun client: each TCP connection to `--localaddr` becomes a smux stream to a kcptun
//! server over KCP. Takes kcptun's flags; the server must run with `--crypt none --datashard 0
//! --parityshard 0 --nocomp` (and the same `--smuxver`, `--mode`, `--mtu`).
//!
//! ```sh
//! kcptun-server -l 127.0.0.1:29900 -t 127.0.0.1:8080 --crypt none --datashard 0 --parityshard 0 --nocomp
//! cargo run --release -p smux-kcptun --example kcptun_client -- -l 127.0.0.1:12948 -r 127.0.0.1:29900 --crypt none --datashard 0 --parityshard 0 --nocomp
//! ```

use smux_kcptun::tunnel::{run_client, Options, Role};

#[tokio::main]
async fn main() {
    let options = match Options::parse(Role::Client, std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kcptun_client: {e}");
            std::process::exit(2);
        }
    };
    eprintln!(
        "kcptun_client: listening on {} (TCP), server {} (UDP), smux {:?}, {:?}",
        options.listen, options.target, options.mux.version, options.kcp
    );
    if let Err(e) = run_client(options).await {
        eprintln!("kcptun_client: {e}");
        std::process::exit(1);
    }
}
