# Third-party dependencies: Debian packages, plus llama.cpp from the pinned
# source that scripts/setup puts in third_party/llama.cpp (the `llama` and
# `llama-common` library targets).
find_package(Threads REQUIRED)
find_package(OpenSSL 3.0 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(SQLite3 REQUIRED)
# Boost 1.81 (Debian's libboost1.81-dev): Asio + Beast with C++20 coroutines,
# and Boost.JSON (compiled library).
find_package(Boost 1.81 CONFIG REQUIRED COMPONENTS json)
add_library(agora_boost INTERFACE)
if(AGORA_FUZZ)
  # Boost.JSON compiled from its own sources, so the fuzzers see its coverage.
  add_library(agora_boost_json STATIC ${PROJECT_SOURCE_DIR}/tests/fuzz/support/boost_json.cpp)
  target_link_libraries(agora_boost_json PUBLIC Boost::headers)
  target_link_libraries(agora_boost INTERFACE Boost::headers agora_boost_json Threads::Threads)
else()
  target_link_libraries(agora_boost INTERFACE Boost::headers Boost::json Threads::Threads)
endif()
target_compile_definitions(agora_boost INTERFACE
  BOOST_ASIO_NO_DEPRECATED BOOST_BEAST_USE_STD_STRING_VIEW)
# toml++ (header-only; Debian ships a pkg-config file and a CMake package)
find_package(tomlplusplus CONFIG QUIET)
if(NOT tomlplusplus_FOUND)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(tomlplusplus REQUIRED IMPORTED_TARGET tomlplusplus)
  add_library(tomlplusplus::tomlplusplus ALIAS PkgConfig::tomlplusplus)
endif()

set(AGORA_LLAMA_SOURCE_DIR ${PROJECT_SOURCE_DIR}/third_party/llama.cpp CACHE PATH
    "the pinned llama.cpp source tree (scripts/setup puts it there)")

if(AGORA_FUZZ)
  return()  # the fuzz tree links no engine
endif()
# llama.cpp is always built from the pinned source, `llama` together with its
# `common` library (chat templates with tools, tool-call parsers, JSON Schema
# to grammar): a system llama.cpp ships no `common` matching its library, so
# there is no system-llama path.
if(NOT EXISTS ${AGORA_LLAMA_SOURCE_DIR}/CMakeLists.txt)
  message(FATAL_ERROR "llama.cpp source not found in ${AGORA_LLAMA_SOURCE_DIR}: run scripts/setup (or `make`)")
endif()
message(STATUS "llama.cpp: building the pinned source in ${AGORA_LLAMA_SOURCE_DIR}")
set(BUILD_SHARED_LIBS OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_COMMON ON CACHE BOOL "" FORCE)
set(LLAMA_SUBPROCESS OFF CACHE BOOL "" FORCE)
set(LLAMA_LLGUIDANCE OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_TESTS OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_TOOLS OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_EXAMPLES OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_SERVER OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_APP OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_UI OFF CACHE BOOL "" FORCE)
set(LLAMA_OPENSSL OFF CACHE BOOL "" FORCE)
set(LLAMA_ALL_WARNINGS OFF CACHE BOOL "" FORCE)
set(GGML_BUILD_TESTS OFF CACHE BOOL "" FORCE)
set(GGML_BUILD_EXAMPLES OFF CACHE BOOL "" FORCE)
# EXCLUDE_FROM_ALL: only what our targets link (llama-common, llama, ggml) gets built.
add_subdirectory(${AGORA_LLAMA_SOURCE_DIR} ${CMAKE_BINARY_DIR}/llama.cpp EXCLUDE_FROM_ALL SYSTEM)
set(AGORA_LLAMA_TARGET llama)
set(AGORA_LLAMA_COMMON_TARGET llama-common)
set(AGORA_GGML_TARGET ggml)
# Many virtual machines advertise AMX in CPUID without granting the tile
# state, so AMX kernels die with SIGILL. -march=native would enable them;
# switch them off (AVX-512/AVX2 paths remain).
option(AGORA_GGML_NO_AMX "Build ggml's CPU backend without AMX kernels" ON)
if(AGORA_GGML_NO_AMX AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  target_compile_options(ggml-cpu PRIVATE -mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
endif()
