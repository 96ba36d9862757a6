// placeholder; replaced by the fuzz target
print("fuzz-http: build with scripts/fuzz.sh")
