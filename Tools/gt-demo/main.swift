print("gt-demo")
