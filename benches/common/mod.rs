//! What the JSON-printing benchmarks (`chip_peak`, `products`) share: the thread count from
//! their one argument, and the start of their output, naming the CPU they ran on.

use frostline::nn::gemm::Cpu;

/// The thread count given as the first numeric argument (2 without one), and the output object
/// begun with the CPU's model, its flags and that count.
pub fn threads_and_header() -> (usize, serde_json::Value) {
    let threads: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2);
    let cpu = Cpu::get();
    let header = serde_json::json!({
        "cpu": cpu.model,
        "flags": cpu.flags(),
        "threads": threads,
    });
    (threads, header)
}
