use std::process::ExitCode;

// Why this allocator, and its setting: `pretext_cli::allocator`.
#[global_allocator]
static ALLOCATOR: pretext_cli::allocator::Allocator = pretext_cli::allocator::Allocator {};

fn main() -> ExitCode {
    pretext_cli::allocator::keep_freed_memory();
    quiet_graphics_stack();
    pretext_cli::main_with_args(std::env::args_os())
}

/// On a headless machine the graphics stack's display code prints "error: XDG_RUNTIME_DIR is
/// invalid or not set in the environment" while looking for a display, though compute needs
/// none. A private runtime directory, given before any thread starts, keeps that line away.
fn quiet_graphics_stack() {
    let valid =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if valid || !cfg!(unix) {
        return;
    }
    let dir = std::env::temp_dir().join("pretext-runtime");
    if std::fs::create_dir_all(&dir).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}
