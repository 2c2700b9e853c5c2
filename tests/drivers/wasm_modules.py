"""WAT sources shared by the wasm driver tests and the security suite."""

ADD = """(module (func (export "add") (param i32 i32) (result i32)
  local.get 0 local.get 1 i32.add))"""

GROW = """(module (memory (export "memory") 1)
  (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
  (func (export "size") (result i32) memory.size))"""

MIN_OVER_CAP = """(module (memory (export "memory") 17))"""

SPIN = """(module (func (export "spin") (loop br 0)))"""

OUTPUT = """(module (memory (export "memory") 1)
  (data (i32.const 16) "hello, world")
  (func (export "hello") (result i32 i32) i32.const 16 i32.const 12)
  (func (export "big") (result i32 i32) i32.const 0 i32.const 5000)
  (func (export "outside") (result i32 i32) i32.const 65530 i32.const 100)
  (global $top (mut i32) (i32.const 1024))
  (func (export "alloc") (param i32) (result i32) (local i32)
    global.get $top local.set 1
    global.get $top local.get 0 i32.add global.set $top
    local.get 1)
  (func (export "echo") (param i32 i32) (result i32 i32) local.get 0 local.get 1))"""

IMPORTS_CLOCK = """(module (import "env" "now" (func $now (result i64)))
  (func (export "now") (result i64) call $now))"""

# WASI: path_open(fd, dirflags, path, path_len, oflags, rights_base, rights_inh, fdflags, *fd) -> errno
# and fd_read via a single iovec into the buffer at 256; returns errno or bytes read.
WASI_FS = """(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 1024))
  (func (export "alloc") (param i32) (result i32) (local i32)
    global.get $top local.set 1
    global.get $top local.get 0 i32.add global.set $top
    local.get 1)
  ;; open(path_ptr, path_len) -> errno (0 = opened; fd stored at 8)
  (func (export "open") (param i32 i32) (result i32)
    (call $path_open (i32.const 3) (i32.const 0) (local.get 0) (local.get 1) (i32.const 0)
      (i64.const 2) (i64.const 2) (i32.const 0) (i32.const 8)))
  ;; create(path_ptr, path_len) -> errno: O_CREAT|O_TRUNC, then write 2 bytes
  (func (export "create") (param i32 i32) (result i32) (local i32)
    (local.set 2 (call $path_open (i32.const 3) (i32.const 0) (local.get 0) (local.get 1)
      (i32.const 9) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 8)))
    (if (local.get 2) (then (return (local.get 2))))
    (i32.store (i32.const 32) (i32.const 40)) (i32.store (i32.const 36) (i32.const 2))
    (i32.store16 (i32.const 40) (i32.const 0x6968))
    (call $fd_write (i32.load (i32.const 8)) (i32.const 32) (i32.const 1) (i32.const 12)))
  ;; read_opened() -> errno; bytes read at 12, data at 256
  (func (export "read_opened") (result i32)
    (i32.store (i32.const 16) (i32.const 256)) (i32.store (i32.const 20) (i32.const 512))
    (call $fd_read (i32.load (i32.const 8)) (i32.const 16) (i32.const 1) (i32.const 12)))
  (func (export "data") (result i32 i32) i32.const 256 (i32.load (i32.const 12))))"""
