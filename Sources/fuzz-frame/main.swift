print("fuzz-frame: build with scripts/fuzz.sh")
