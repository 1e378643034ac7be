{
  "targets": [
    {
      "target_name": "usernet_native",
      "sources": [
        "native/addon.cc",
        "native/exec.cc",
        "native/frame_io.cc",
        "native/ifconfig.cc",
        "native/netns.cc",
        "native/ping.cc",
        "native/rtnetlink.cc",
        "native/sandbox.cc",
        "native/socket_io.cc",
        "native/tap.cc",
        "native/tcp_sockets.cc",
        "native/udp_sockets.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fexceptions", "-O3"],
      "cflags_cc!": ["-fexceptions", "-std=gnu++17", "-std=gnu++20", "-O3"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "cflags_cc": ["-std=c++17", "-fno-exceptions", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    }
  ]
}
