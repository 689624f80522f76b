//! The sfuserver's real forward path, end to end inside the core: a publisher's SRTP packet
//! (captured from a real str0m client in a simulated meeting, `core::sim::ForwardBench`)
//! goes into the media core, which decrypts it once (str0m, RTP mode), hands it to the
//! other worker when viewers sit there, and writes one rewritten, encrypted copy per viewer
//! into a send batch (str0m's direct send). Timers that come due on the simulated clock run
//! too. The socket is not included (the sink counts datagrams): `sendmmsg` is measured by
//! `scripts/bench-sfu.sh` end to end.
//!
//! Throughput is in copies: criterion's elements/s is forwarded packets per CPU-second of
//! the core alone.
//!
//!   cargo bench --bench forward

use std::net::SocketAddr;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use meeting_appliance::roles::sfuserver::core::sim::ForwardBench;
use meeting_appliance::roles::sfuserver::core::{MAX_DATAGRAM, NetSink};

struct Count {
    buf: Vec<u8>,
    datagrams: u64,
}

impl NetSink for Count {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn commit(&mut self, _len: usize, _to: SocketAddr, _received: Option<Instant>) {
        self.datagrams += 1;
    }
}

fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward");
    // 1 Mbit/s at 25 fps: 5 000-byte frames, five ~1 000-byte packets each.
    for (viewers, workers) in [(1usize, 1usize), (10, 1), (100, 1), (100, 2)] {
        let mut b = ForwardBench::new(viewers, workers, 5000);
        b.prepare(1000);
        g.throughput(Throughput::Elements(viewers as u64));
        let name = format!("1_to_{viewers}_on_{workers}_workers");
        let mut sink = Count {
            buf: vec![0; MAX_DATAGRAM],
            datagrams: 0,
        };
        g.bench_function(&name, |bch| {
            bch.iter_custom(|iters| {
                b.prepare(iters as usize);
                let t = Instant::now();
                for _ in 0..iters {
                    b.forward_next(&mut sink);
                }
                t.elapsed()
            })
        });
        println!(
            "{name}: {:.2} datagrams per packet fed",
            sink.datagrams as f64 / b.fed().max(1) as f64
        );
    }
    g.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
