from pneumonia_zoo.cli import main

main()
