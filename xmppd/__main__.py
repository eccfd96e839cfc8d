from xmppd.cli import main

raise SystemExit(main())
