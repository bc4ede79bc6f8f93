%% e2e_probe looks inside a running ejabberd for the benchmark
%% (bench/erlang.go). Run as a hidden node:
%%   erl ... -run e2e_probe main NODE
%% It connects to NODE, loads itself there and prints "ready". Then a line
%% "start" on stdin starts a measurement and "stop" ends it and prints:
%%   scheduler ID UTIL  - normal scheduler ID's utilisation, 0..1, busy
%%                        waiting excluded (scheduler_wall_time)
%%   dirty_cpu UTIL     - the dirty CPU schedulers, summed
%%   dirty_io UTIL      - the dirty IO schedulers, summed
%%   reductions N       - the work done by all processes
%%   process REDS INITIAL CURRENT - the processes that ran most, by
%%                        reductions during the measurement
-module(e2e_probe).
-export([main/1, measure/0]).

main([NodeStr]) ->
    Node = list_to_atom(NodeStr),
    true = net_kernel:connect_node(Node),
    {Mod, Bin, File} = code:get_object_code(?MODULE),
    {module, _} = erpc:call(Node, code, load_binary, [Mod, File, Bin]),
    io:format("ready~n"),
    "start\n" = io:get_line(""),
    Pid = erpc:call(Node, erlang, spawn, [?MODULE, measure, []]),
    Pid ! {start, self()},
    receive started -> ok end,
    io:format("started~n"),
    "stop\n" = io:get_line(""),
    Pid ! {stop, self()},
    receive {result, Lines} -> [io:format("~s~n", [L]) || L <- Lines] end,
    halt().

%% measure runs on the server's node: it holds scheduler_wall_time on for
%% as long as the measurement lasts.
measure() ->
    receive {start, From} -> ok end,
    erlang:system_flag(scheduler_wall_time, true),
    Reds0 = [{P, reductions(P)} || P <- erlang:processes()],
    Wall0 = lists:sort(erlang:statistics(scheduler_wall_time_all)),
    From ! started,
    receive {stop, From2} -> ok end,
    Wall1 = lists:sort(erlang:statistics(scheduler_wall_time_all)),
    Normal = erlang:system_info(schedulers),
    DirtyCPU = erlang:system_info(dirty_cpu_schedulers),
    Util = [{I, (A1 - A0) / max(1, T1 - T0)} || {{I, A0, T0}, {I, A1, T1}} <- lists:zip(Wall0, Wall1)],
    Sched = [io_lib:format("scheduler ~w ~.3f", [I, U]) || {I, U} <- Util, I =< Normal],
    Sum = fun(Lo, Hi) -> lists:sum([U || {I, U} <- Util, I > Lo, I =< Hi]) end,
    Dirty = [io_lib:format("dirty_cpu ~.3f", [Sum(Normal, Normal + DirtyCPU)]),
             io_lib:format("dirty_io ~.3f", [Sum(Normal + DirtyCPU, length(Util))])],
    Ran = lists:reverse(lists:keysort(2, [{P, reductions(P) - R0} || {P, R0} <- Reds0])),
    Top = [io_lib:format("process ~w ~s ~s", [N, initial_call(P), current_function(P)])
           || {P, N} <- lists:sublist(Ran, 6), N > 0],
    Total = io_lib:format("reductions ~w", [lists:sum([N || {_, N} <- Ran])]),
    From2 ! {result, Sched ++ Dirty ++ [Total | Top]}.

reductions(P) ->
    case erlang:process_info(P, reductions) of
        {reductions, N} -> N;
        undefined -> 0
    end.

%% initial_call names a process by what started it (proc_lib's record,
%% else its registered name, else the raw initial call).
initial_call(P) ->
    case erlang:process_info(P, [dictionary, registered_name, initial_call]) of
        undefined -> "gone";
        Info ->
            D = proplists:get_value(dictionary, Info),
            case {proplists:get_value('$initial_call', D), proplists:get_value(registered_name, Info)} of
                {{M, F, A}, _} -> io_lib:format("~w:~w/~w", [M, F, A]);
                {_, Name} when is_atom(Name), Name =/= [] -> atom_to_list(Name);
                _ -> {M, F, A} = proplists:get_value(initial_call, Info), io_lib:format("~w:~w/~w", [M, F, A])
            end
    end.

current_function(P) ->
    case erlang:process_info(P, current_function) of
        {current_function, {M, F, A}} -> io_lib:format("~w:~w/~w", [M, F, A]);
        _ -> "-"
    end.
