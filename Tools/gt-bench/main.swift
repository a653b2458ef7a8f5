print("gt-bench")
