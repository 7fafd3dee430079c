//! Finding and loading the ONNX Runtime shared library (`ort` with `load-dynamic`).
//!
//! If `ort` is used before a library is loaded it panics, so the library is located here first,
//! in a fixed order, and a missing one becomes an error that says what to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Where the library came from, for `doctor` and the run summary.
#[derive(Debug, Clone)]
pub(crate) struct OrtLibrary {
    pub path: PathBuf,
    pub found_by: &'static str,
}

/// The loaded runtime: the library and the `ort` environment sessions are built in.
pub(crate) struct Runtime {
    pub library: OrtLibrary,
    pub environment: ort::environment::Environment,
}

/// Default venv made by scripts/setup.sh (kept outside the repo so fresh clones reuse it).
pub(crate) fn default_venv() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("FROSTLINE_VENV").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(v));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/frostline/venv"))
}

/// `libonnxruntime.so*` inside a Python `site-packages/onnxruntime/capi` folder, newest first.
fn library_in_capi(capi: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(capi)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so") || n == "libonnxruntime.dylib")
        })
        .collect();
    found.sort();
    found.pop()
}

fn library_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    for entry in std::fs::read_dir(&lib).ok()?.flatten() {
        let capi = entry.path().join("site-packages/onnxruntime/capi");
        if let Some(p) = library_in_capi(&capi) {
            return Some(p);
        }
    }
    None
}

fn library_from_python() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let capi = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    library_in_capi(&capi)
}

/// Locates the library: `--ort-lib` → `ORT_DYLIB_PATH` → the project venv → `python3`'s onnxruntime.
pub(crate) fn locate(flag: Option<&Path>) -> Result<OrtLibrary> {
    let mut tried = Vec::new();
    if let Some(p) = flag {
        if p.is_file() {
            return Ok(OrtLibrary {
                path: p.to_path_buf(),
                found_by: "--ort-lib",
            });
        }
        return Err(Error::OrtLibraryNotFound {
            tried: format!("--ort-lib {} does not exist", p.display()),
        });
    }
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if Path::new(&p).is_file() => {
            return Ok(OrtLibrary {
                path: PathBuf::from(p),
                found_by: "ORT_DYLIB_PATH",
            })
        }
        Some(p) => tried.push(format!(
            "ORT_DYLIB_PATH={} (no such file)",
            p.to_string_lossy()
        )),
        None => tried.push("ORT_DYLIB_PATH (unset)".into()),
    }
    if let Some(venv) = default_venv() {
        if let Some(path) = library_in_venv(&venv) {
            return Ok(OrtLibrary {
                path,
                found_by: "frostline venv",
            });
        }
        tried.push(format!("venv {}", venv.display()));
    }
    if let Some(path) = library_from_python() {
        return Ok(OrtLibrary {
            path,
            found_by: "python3 -c 'import onnxruntime'",
        });
    }
    tried.push("python3's onnxruntime".into());
    Err(Error::OrtLibraryNotFound {
        tried: format!("tried {}", tried.join(", ")),
    })
}

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// Loads the library once per process and builds the shared `ort` environment.
pub(crate) fn init(flag: Option<&Path>) -> Result<&'static Runtime> {
    if let Some(r) = RUNTIME.get() {
        return r.as_ref().map_err(|e| Error::Device(e.clone()));
    }
    let library = locate(flag)?;
    let built = ort::init_from(&library.path)
        .map_err(|e| Error::OrtLibraryLoad {
            path: library.path.clone(),
            reason: format!(
                "{e}; frostline needs ONNX Runtime >= 1.{}",
                ort::MINOR_VERSION
            ),
        })
        .and_then(|b| {
            b.with_name("frostline")
                .with_telemetry(false)
                .build()
                .map_err(|e| Error::ort("creating the environment", e))
        });
    let environment = built?;
    let runtime = RUNTIME.get_or_init(|| {
        Ok(Runtime {
            library,
            environment,
        })
    });
    runtime.as_ref().map_err(|e| Error::Device(e.clone()))
}

/// The loaded library's own version string (`OrtGetApiBase()->GetVersionString()`).
pub(crate) fn version(library: &Path) -> String {
    #[repr(C)]
    struct OrtApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
    }
    let Ok(cpath) = std::ffi::CString::new(library.as_os_str().as_encoded_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: the library is already loaded by `init` (RTLD_NOLOAD only takes another reference),
    // and OrtGetApiBase / GetVersionString are the stable C entry points of every ORT release.
    unsafe {
        let handle = libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return "unknown".into();
        }
        let sym = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        let version = if sym.is_null() {
            "unknown".to_string()
        } else {
            let get_base: unsafe extern "C" fn() -> *const OrtApiBase = std::mem::transmute(sym);
            let base = get_base();
            std::ffi::CStr::from_ptr(((*base).get_version_string)())
                .to_string_lossy()
                .into_owned()
        };
        libc::dlclose(handle);
        version
    }
}

/// Execution providers compiled into the loaded library.
pub(crate) fn available_providers() -> Vec<String> {
    use ort::ep::ExecutionProvider;
    let mut out = vec!["CPUExecutionProvider".to_string()];
    if ort::ep::CUDA::is_available().unwrap_or(false) {
        out.push("CUDAExecutionProvider".into());
    }
    out
}
