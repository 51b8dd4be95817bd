import sys

from entitynet_cli.main import main

sys.exit(main())
