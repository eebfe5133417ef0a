from mpdit_bench.cli import main

main()
