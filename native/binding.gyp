{
  "targets": [
    {
      "target_name": "lazy_als_native",
      "sources": ["src/addon.c", "src/server.c", "src/slots.c", "src/table.c", "src/fdcache.c"],
      "cflags_c": ["-std=c11", "-Wall", "-Wextra", "-O2", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
