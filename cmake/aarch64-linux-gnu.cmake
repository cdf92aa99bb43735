# Cross-compiling for aarch64 Linux with Debian's cross compiler
# (g++-aarch64-linux-gnu) against Debian's arm64 multiarch packages
# (libhwy-dev:arm64 ... in /usr/lib/aarch64-linux-gnu); scripts/setup-arm64.sh
# installs both. No sysroot: multiarch keeps each architecture's libraries and
# CMake packages in their own /usr/lib/<triplet>, and the architecture-
# independent ones (nlohmann_json, CLI11) are shared.
#
# Test executables run under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR: used
# by gtest_discover_tests and ctest) with the arm64 loader, libc, libstdc++
# and libgomp of the multiarch packages (libc6:arm64 ..., in /lib and
# /usr/lib/aarch64-linux-gnu), not with `-L /usr/aarch64-linux-gnu`: there
# the cross toolchain's loader (libc6-arm64-cross, older) meets the newer
# multiarch libc6:arm64, and the first thread created hangs (every OpenMP
# region). The CPU model comes from QEMU_CPU in the environment; unset,
# qemu-user's aarch64 default is "max", which has NEON, SVE and SVE2 (512-bit
# vectors unless QEMU_CPU=max,sve-default-vector-length=16 or 32), so
# Highway's run-time dispatch and test::ForEachSimdTarget see all of them.
# scripts/test-arm64.sh sets QEMU_CPU explicitly.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(KVQ_TRIPLET aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${KVQ_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${KVQ_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${KVQ_TRIPLET})

# Only the target architecture's .pc files (Debian's multiarch layout).
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${KVQ_TRIPLET}/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

find_program(KVQ_QEMU NAMES qemu-aarch64 qemu-aarch64-static)
if(KVQ_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${KVQ_QEMU})
endif()
