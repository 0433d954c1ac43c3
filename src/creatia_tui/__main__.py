from creatia_tui.cli import main

main()
