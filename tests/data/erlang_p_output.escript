#!/usr/bin/env escript
main(_) ->
    {ok, F} = file:open("erlang_p_output.txt", [write]),
    Terms = [
      {passwd, {<<"alice">>, <<"example.org">>}, <<"s3cr\303\251t"/utf8>>},
      {a, 'Quoted Atom', 'with\'quote', [], "", <<>>, "abc", [1,2,3], [a|b], [1,2|c]},
      {16#FF, -42, 123456789012345678901234567890, 1.5, -0.001, 1.0e100, 2.5e-10, $a, $\n},
      {<<1,2,3,200>>, <<"h\303\251llo">>, "tab\there\"q\\", [955, 8364], 'é', <<0>>},
      #{a => 1, <<"k">> => [x], [1] => #{}},
      {self(), make_ref()},
      {long, lists:duplicate(30, <<"aaaaaaaaaaaaaaaaaaaa">>), lists:flatten(lists:duplicate(200, "xy"))},
      {unicode_bin, unicode:characters_to_binary("h\x{e9}llo \x{263A} \x{1F600}")},
      {unicode_str, "h\x{e9}llo \x{263A}"}
    ],
    [io:format(F, "~p.~n", [T]) || T <- Terms],
    file:close(F).
