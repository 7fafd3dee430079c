//! What the CPU can do, read once from CPUID: the model name `doctor` and the benchmarks print,
//! and the features the kernels are chosen from.

use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    pub model: String,
    pub avx2_fma: bool,
    pub avx512f: bool,
    pub avx512_bf16: bool,
    /// AMX tiles with bf16 (the AMX kernel also needs the OS's leave: see `Kernel::bf16`).
    pub amx_bf16: bool,
    /// The int8 dot products ONNX Runtime's int8 graphs can use (its MLAS kernels pick by these).
    pub amx_int8: bool,
    pub avx512_vnni: bool,
    pub avx_vnni: bool,
}

impl Cpu {
    /// The CPU this process runs on (detected once).
    pub fn get() -> &'static Cpu {
        static CPU: OnceLock<Cpu> = OnceLock::new();
        CPU.get_or_init(detect)
    }

    /// The features that matter here, as `/proc/cpuinfo` spells them.
    pub fn flags(&self) -> String {
        let f: Vec<&str> = [
            (self.avx2_fma, "avx2 fma"),
            (self.avx512f, "avx512f"),
            (self.avx512_bf16, "avx512_bf16"),
            (self.amx_bf16, "amx_bf16"),
            (self.avx_vnni, "avx_vnni"),
            (self.avx512_vnni, "avx512_vnni"),
            (self.amx_int8, "amx_int8"),
        ]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect();
        if f.is_empty() {
            "none of avx2/avx512".into()
        } else {
            f.join(" ")
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Cpu {
    use std::arch::x86_64::__cpuid_count;
    // CPUID exists on every x86_64 CPU; leaves above the maximum return zeros, which read as
    // "feature absent".
    let (max_ext, leaf7) = (__cpuid_count(0x8000_0000, 0).eax, __cpuid_count(7, 0));
    let model = if max_ext >= 0x8000_0004 {
        let bytes: Vec<u8> = (0x8000_0002u32..=0x8000_0004)
            .flat_map(|leaf| {
                let r = __cpuid_count(leaf, 0);
                [r.eax, r.ebx, r.ecx, r.edx]
                    .into_iter()
                    .flat_map(u32::to_le_bytes)
            })
            .collect();
        String::from_utf8_lossy(&bytes)
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .to_string()
    } else {
        "unknown x86_64".into()
    };
    // Family and model tell generations apart when the brand string does not (a VM's
    // "AMD EPYC" is Zen 4 at family 25, Zen 5 at 26).
    let sig = __cpuid_count(1, 0).eax;
    let base_family = (sig >> 8) & 0xf;
    let family = base_family
        + if base_family == 0xf {
            (sig >> 20) & 0xff
        } else {
            0
        };
    let model_id = (sig >> 4) & 0xf
        | if base_family >= 6 {
            ((sig >> 16) & 0xf) << 4
        } else {
            0
        };
    Cpu {
        model: format!("{model} (family {family}, model {model_id})"),
        avx2_fma: is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        avx512f: is_x86_feature_detected!("avx512f"),
        // The bf16 packers also interleave with AVX512-BW, which every AVX512-BF16 CPU has.
        avx512_bf16: is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bf16"),
        // CPUID.(EAX=7,ECX=0):EDX bit 22 (std's detection of AMX is not stable yet).
        amx_bf16: leaf7.edx & (1 << 22) != 0,
        amx_int8: leaf7.edx & (1 << 25) != 0,
        avx512_vnni: is_x86_feature_detected!("avx512f") && leaf7.ecx & (1 << 11) != 0,
        // CPUID.(EAX=7,ECX=1):EAX bit 4.
        avx_vnni: __cpuid_count(7, 1).eax & (1 << 4) != 0,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Cpu {
    Cpu {
        model: std::env::consts::ARCH.into(),
        avx2_fma: false,
        avx512f: false,
        avx512_bf16: false,
        amx_bf16: false,
        amx_int8: false,
        avx512_vnni: false,
        avx_vnni: false,
    }
}
