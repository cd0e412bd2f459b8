{
  "targets": [
    {
      "target_name": "aetn_gemm",
      "sources": ["gemm.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lopenblas"]
    }
  ]
}
